package main

import (
	"io"

	"gateagent/diag"
)

// runDiag is `gateagent diag`: the field technician's checks (see package
// diag).
func runDiag(args []string, stdout, stderr io.Writer) int {
	return diag.Command(args, stdout, stderr, diag.Env{})
}
