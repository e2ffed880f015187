package config

import (
	"gateagent/wear"
)

// Storage describes the board's flash, against which diag judges the
// agent's writes (package wear): the device lifetime the agent's write
// rate projects must reach the board's planned service life.
type Storage struct {
	// DeviceBytes is the size of the device the state directory is on.
	DeviceBytes int64 `toml:"device_bytes"`
	// RatedCycles is the program/erase cycles its blocks are rated for.
	RatedCycles int64 `toml:"rated_cycles"`
	// DeviceAmplification is its controller's internal write
	// amplification.
	DeviceAmplification float64 `toml:"device_amplification"`
	// ServiceYears is the board's planned service life.
	ServiceYears float64 `toml:"service_years"`
}

func defaultStorage() Storage {
	d := wear.DefaultDevice()
	return Storage{DeviceBytes: d.Bytes, RatedCycles: d.RatedCycles, DeviceAmplification: d.Amplification, ServiceYears: d.ServiceYears}
}

// The ranges of [storage].
const (
	minDeviceBytes = 64 << 20  // 64 MiB: smaller than any board's eMMC or SD card
	maxDeviceBytes = 1 << 50   // 1 PiB
	maxRatedCycles = 1_000_000 // SLC is rated for about 100,000
	maxDeviceAmp   = 100
	maxServiceYrs  = 100
)

// Device is the [storage] section as package wear reads it.
func (c *Config) Device() wear.Device {
	s := c.Storage
	return wear.Device{Bytes: s.DeviceBytes, RatedCycles: s.RatedCycles, Amplification: s.DeviceAmplification, ServiceYears: s.ServiceYears}
}

// validateStorage checks the [storage] section.
func (c *Config) validateStorage(bad func(key, format string, a ...any)) {
	s := c.Storage
	if s.DeviceBytes < minDeviceBytes || s.DeviceBytes > maxDeviceBytes {
		bad("storage.device_bytes", "%d: give the size in bytes of the device the cache is on (lsblk -b), from %d (64 MiB) to %d; e.g. 8000000000 for an 8 GB eMMC", s.DeviceBytes, minDeviceBytes, int64(maxDeviceBytes))
	}
	if s.RatedCycles < 1 || s.RatedCycles > maxRatedCycles {
		bad("storage.rated_cycles", "%d: give the program/erase cycles from the device's datasheet, 1 to %d (MLC eMMC: about 3000; pSLC: 20000 to 30000)", s.RatedCycles, maxRatedCycles)
	}
	if !(s.DeviceAmplification >= 1 && s.DeviceAmplification <= maxDeviceAmp) {
		bad("storage.device_amplification", "%g: give the device's internal write amplification, 1 (a perfect controller) to %d; 4 when the datasheet does not say", s.DeviceAmplification, maxDeviceAmp)
	}
	if !(s.ServiceYears > 0 && s.ServiceYears <= maxServiceYrs) {
		bad("storage.service_years", "%g: give the board's planned service life in years, more than 0 and at most %d", s.ServiceYears, maxServiceYrs)
	}
}
