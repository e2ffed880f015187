// Command elfcheck checks the release binaries `make cross` builds before
// they go onto a gate: each must be an ELF file for the gate's CPU,
// statically linked (a gate has no Go toolchain and may have another C
// library, or none), stripped, and not larger than the limit. It reports
// each binary's size, and exits 1 naming every problem it found.
//
// Usage:
//
//	go run ./internal/cmd/elfcheck [-max-mb 15] GOARCH=FILE...
//
// e.g. arm64=bin/gateagent-linux-arm64 arm=bin/gateagent-linux-armv7.
// GOARCH is Go's name for the CPU: arm64, arm, amd64 or 386. For a Go
// binary it also checks the build settings recorded in it: the same
// GOARCH, CGO_ENABLED=0, -trimpath, and GOARM=7 for arm.
//
// Standard library only (debug/elf, debug/buildinfo).
package main

import (
	"debug/buildinfo"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// arches maps a GOARCH to the ELF machine and class a gate's kernel runs.
var arches = map[string]struct {
	machine elf.Machine
	class   elf.Class
}{
	"arm64": {elf.EM_AARCH64, elf.ELFCLASS64},
	"arm":   {elf.EM_ARM, elf.ELFCLASS32},
	"amd64": {elf.EM_X86_64, elf.ELFCLASS64},
	"386":   {elf.EM_386, elf.ELFCLASS32},
}

// goarm is the ARM version the 32-bit binary must be built for: ARMv7
// with hardware floating point, what every 32-bit gate board runs.
const goarm = "7"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elfcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	maxMB := fs.Float64("max-mb", 15, "the largest size allowed, in MB (1 MB = 1,000,000 bytes); 0: no limit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elfcheck [-max-mb N] GOARCH=FILE...  (GOARCH: arm64, arm, amd64, 386)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	failed := 0
	for _, arg := range fs.Args() {
		arch, path, ok := strings.Cut(arg, "=")
		if _, known := arches[arch]; !ok || !known || path == "" {
			fmt.Fprintf(stderr, "elfcheck: %q: want GOARCH=FILE with GOARCH one of arm64, arm, amd64, 386\n", arg)
			return 2
		}
		r, problems := check(path, arch, *maxMB)
		if len(problems) > 0 {
			failed++
			fmt.Fprintf(stdout, "FAIL %s (GOARCH=%s%s):\n", path, arch, r.sizeText())
			for _, p := range problems {
				fmt.Fprintf(stdout, "       %s\n", p)
			}
			continue
		}
		fmt.Fprintf(stdout, "ok   %s: %s\n", path, r)
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "elfcheck: %d of %d binaries not fit for a gate (see FAIL above); `make cross` builds them right\n", failed, fs.NArg())
		return 1
	}
	return 0
}

// report is what check found in a good binary.
type report struct {
	size   int64
	arch   string
	goVer  string // "" for a binary that is not Go's
	maxMB  float64
	static string // "static" or "static-pie"
}

func (r report) String() string {
	s := fmt.Sprintf("%.1f MB (%d bytes)", mb(r.size), r.size)
	if r.maxMB > 0 {
		s += fmt.Sprintf(", limit %g MB", r.maxMB)
	}
	s += fmt.Sprintf("; ELF %s, %s, stripped", machineName(r.arch), r.static)
	if r.goVer != "" {
		s += ", " + r.goVer
	}
	return s
}

// sizeText is ", 9.5 MB" once the size is known.
func (r report) sizeText() string {
	if r.size < 0 {
		return ""
	}
	return fmt.Sprintf(", %.1f MB", mb(r.size))
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// machineName is how the ELF header of a GOARCH binary reads, e.g.
// "64-bit AARCH64".
func machineName(arch string) string {
	a := arches[arch]
	return describe(a.class, a.machine)
}

func describe(c elf.Class, m elf.Machine) string {
	bits := map[elf.Class]string{elf.ELFCLASS32: "32-bit", elf.ELFCLASS64: "64-bit"}[c]
	if bits == "" {
		bits = c.String()
	}
	return bits + " " + strings.TrimPrefix(m.String(), "EM_")
}

// check opens path and returns what it found and every problem, one
// sentence each (none: the binary is fit for a gate).
func check(path, arch string, maxMB float64) (r report, problems []string) {
	r = report{arch: arch, maxMB: maxMB, size: -1}
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	st, err := os.Stat(path)
	if err != nil {
		bad("%v", err)
		return r, problems
	}
	r.size = st.Size()
	f, err := elf.Open(path)
	if err != nil {
		bad("not an ELF executable (%v)", err)
		return r, problems
	}
	defer f.Close()

	want := arches[arch]
	if f.Machine != want.machine || f.Class != want.class {
		bad("built for %s, want %s", describe(f.Class, f.Machine), machineName(arch))
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		bad("ELF type %s: not an executable", f.Type)
	}

	// Static: no program interpreter (the dynamic loader) and no shared
	// library needed. A static PIE has a dynamic section but neither.
	r.static = "static"
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			interp, _ := io.ReadAll(io.LimitReader(p.Open(), 256))
			bad("dynamically linked: needs the loader %s (build with CGO_ENABLED=0)", strings.TrimRight(string(interp), "\x00"))
		case elf.PT_DYNAMIC:
			r.static = "static-pie"
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		bad("reading its dynamic section: %v", err)
	} else if len(libs) > 0 {
		bad("dynamically linked: needs %s (build with CGO_ENABLED=0)", strings.Join(libs, ", "))
	}

	// Stripped: no symbol table (-s) and no debug information (-w).
	if f.Section(".symtab") != nil {
		bad("not stripped: has a symbol table (.symtab; build with -ldflags '-s -w')")
	}
	var debug []string
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			debug = append(debug, s.Name)
		}
	}
	if len(debug) > 0 {
		bad("not stripped: has debug information (%s; build with -ldflags '-s -w')", strings.Join(debug, ", "))
	}

	if maxMB > 0 && mb(r.size) > maxMB {
		bad("too large: %.1f MB (%d bytes), the limit is %g MB", mb(r.size), r.size, maxMB)
	}

	// A Go binary records how it was built: hold that to the release flags too.
	if info, err := buildinfo.ReadFile(path); err == nil {
		r.goVer = info.GoVersion
		settings := map[string]string{}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
		if got := settings["GOARCH"]; got != arch {
			bad("Go build for GOARCH=%s, want %s", got, arch)
		}
		if got := settings["CGO_ENABLED"]; got != "0" {
			bad("Go build with CGO_ENABLED=%q, want 0", got)
		}
		if settings["-trimpath"] != "true" {
			bad("Go build without -trimpath (it carries the build machine's paths)")
		}
		if arch == "arm" {
			if v, _, _ := strings.Cut(settings["GOARM"], ","); v != goarm {
				bad("Go build for GOARM=%q, want %s", settings["GOARM"], goarm)
			}
		}
		if r.goVer != "" {
			r.goVer += " " + settings["GOOS"] + "/" + settings["GOARCH"]
			if arch == "arm" {
				r.goVer += " GOARM=" + settings["GOARM"]
			}
		}
	}
	return r, problems
}
