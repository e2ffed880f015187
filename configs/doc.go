// Package configs holds the gate's deployment files: the example config
// (gateagent.example.toml), the systemd unit (gateagent.service), the udev
// rules for the scanner and the GPIO devices (99-gateagent.rules) and the
// systemd-sysusers file for the agent's user (gateagent.sysusers).
//
// It has no code; its tests check that these files agree with one another
// and with what the agent needs (see deploy_test.go and README.md). The
// config file's types, defaults and reading are package config.
package configs
