package config_test

import (
	"strings"
	"testing"

	"gateagent/config"
	"gateagent/wear"
)

func TestStorageDefaults(t *testing.T) {
	c, err := config.Load(write(t, minimal))
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Device(); d != wear.DefaultDevice() || d.Bytes != 8_000_000_000 || d.RatedCycles != 3000 || d.Amplification != 4 || d.ServiceYears != 10 {
		t.Fatalf("defaults: %+v", d)
	}
	c, err = config.Load(write(t, minimal+"[storage]\ndevice_bytes = 16_000_000_000\nrated_cycles = 30000\ndevice_amplification = 2.5\nservice_years = 7\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Device(); d != (wear.Device{Bytes: 16e9, RatedCycles: 30000, Amplification: 2.5, ServiceYears: 7}) {
		t.Fatalf("read %+v", d)
	}
}

// TestStorageRefusals: garbage, zero, negative and absurd values are
// refused with the key and what to write.
func TestStorageRefusals(t *testing.T) {
	cases := []struct {
		name, set string
		want      []string
	}{
		{"size as a string", `device_bytes = "8GB"`, []string{":12:", "storage.device_bytes", "whole number"}},
		{"size as a fraction", `device_bytes = 8.5e9`, []string{"storage.device_bytes", "whole number"}},
		{"size zero", `device_bytes = 0`, []string{"storage.device_bytes", "lsblk -b"}},
		{"size negative", `device_bytes = -8000000000`, []string{"storage.device_bytes", "64 MiB"}},
		{"size in GB by mistake", `device_bytes = 8`, []string{"storage.device_bytes", "8000000000"}},
		{"size absurd", `device_bytes = 9_000_000_000_000_000`, []string{"storage.device_bytes"}},
		{"cycles zero", `rated_cycles = 0`, []string{"storage.rated_cycles", "datasheet"}},
		{"cycles negative", `rated_cycles = -3000`, []string{"storage.rated_cycles"}},
		{"cycles absurd", `rated_cycles = 10_000_000_000`, []string{"storage.rated_cycles", "1 to 1000000"}},
		{"cycles as text", `rated_cycles = "3k"`, []string{"storage.rated_cycles", "whole number"}},
		{"amplification zero", `device_amplification = 0`, []string{"storage.device_amplification", "1 (a perfect controller)"}},
		{"amplification below 1", `device_amplification = 0.5`, []string{"storage.device_amplification"}},
		{"amplification absurd", `device_amplification = 1e9`, []string{"storage.device_amplification"}},
		{"amplification nan", `device_amplification = nan`, []string{"storage.device_amplification"}},
		{"amplification inf", `device_amplification = inf`, []string{"storage.device_amplification"}},
		{"amplification as text", `device_amplification = "four"`, []string{"storage.device_amplification", "a number"}},
		{"years zero", `service_years = 0`, []string{"storage.service_years", "more than 0"}},
		{"years negative", `service_years = -10`, []string{"storage.service_years"}},
		{"years absurd", `service_years = 1000`, []string{"storage.service_years", "at most 100"}},
		{"unknown key", `device_size = 8000000000`, []string{"device_size", "unknown"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(write(t, minimal+"[storage]\n"+tc.set+"\n"))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
