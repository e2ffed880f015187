//go:build !linux

package logging

import "os"

// fileID: systemd's journal is Linux only.
func fileID(*os.File) (dev, ino uint64, ok bool) { return 0, 0, false }

func formatID(dev, ino uint64) string { return "" }
