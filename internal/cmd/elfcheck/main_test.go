package main

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildHello builds a tiny Go program for linux/arm64 with CGO_ENABLED=0
// and the given extra flags, and returns its path.
func buildHello(t *testing.T, flags ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	dir := t.TempDir()
	for name, text := range map[string]string{
		"go.mod":  "module hello\n\ngo 1.26\n",
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "hello")
	cmd := exec.Command(goTool, append(append([]string{"build"}, flags...), "-o", out, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", flags, err, b)
	}
	return out
}

// wantProblems fails unless each of want is a substring of some problem,
// or, with no want, unless there are no problems.
func wantProblems(t *testing.T, what string, problems []string, want ...string) {
	t.Helper()
	if len(want) == 0 && len(problems) > 0 {
		t.Errorf("%s: problems %q, want none", what, problems)
	}
	for _, w := range want {
		found := false
		for _, p := range problems {
			found = found || strings.Contains(p, w)
		}
		if !found {
			t.Errorf("%s: problems %q, want one saying %q", what, problems, w)
		}
	}
}

func TestCheck(t *testing.T) {
	release := buildHello(t, "-trimpath", "-ldflags=-s -w")
	r, problems := check(release, "arm64", 15)
	wantProblems(t, "release build", problems)
	if s := r.String(); !strings.Contains(s, "64-bit AARCH64, static, stripped") || !strings.Contains(s, " MB (") {
		t.Errorf("release build: report %q", s)
	}

	_, problems = check(release, "arm", 15)
	wantProblems(t, "arm64 binary checked as arm", problems, "built for 64-bit AARCH64, want 32-bit ARM", "GOARCH=arm64, want arm", "GOARM")
	_, problems = check(release, "amd64", 15)
	wantProblems(t, "arm64 binary checked as amd64", problems, "want 64-bit X86_64")
	_, problems = check(release, "arm64", 0.001)
	wantProblems(t, "size limit", problems, "too large", "the limit is 0.001 MB")

	plain := buildHello(t) // go build with no flags: symbols, DWARF, build paths
	_, problems = check(plain, "arm64", 15)
	wantProblems(t, "plain go build", problems, "symbol table (.symtab", "debug information", "without -trimpath")

	text := filepath.Join(t.TempDir(), "gateagent")
	os.WriteFile(text, []byte("#!/bin/sh\necho not a binary\n"), 0o755)
	_, problems = check(text, "arm64", 15)
	wantProblems(t, "shell script", problems, "not an ELF executable")
	_, problems = check(filepath.Join(t.TempDir(), "absent"), "arm64", 15)
	wantProblems(t, "absent file", problems, "no such file")
}

// TestCheckDynamic checks a dynamically linked system binary.
func TestCheckDynamic(t *testing.T) {
	const bin = "/bin/true"
	f, err := elf.Open(bin)
	if err != nil {
		t.Skipf("%s: %v", bin, err)
	}
	machine := f.Machine
	interp := false
	for _, p := range f.Progs {
		interp = interp || p.Type == elf.PT_INTERP
	}
	f.Close()
	if !interp {
		t.Skipf("%s is not dynamically linked here", bin)
	}
	for arch, a := range arches {
		if a.machine == machine {
			_, problems := check(bin, arch, 15)
			wantProblems(t, bin, problems, "dynamically linked: needs the loader", "CGO_ENABLED=0")
			return
		}
	}
	t.Skipf("%s is for %s", bin, machine)
}

func TestRun(t *testing.T) {
	release := buildHello(t, "-trimpath", "-ldflags=-s -w")
	var out, errOut bytes.Buffer
	if code := run([]string{"arm64=" + release}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "ok   "+release+": ") {
		t.Errorf("good binary: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"-max-mb", "15", "arm64=" + release, "arm=" + release}, &out, &errOut); code != 1 ||
		!strings.Contains(out.String(), "FAIL "+release+" (GOARCH=arm") || !strings.Contains(errOut.String(), "not fit for a gate") {
		t.Errorf("one bad binary: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	for _, args := range [][]string{nil, {release}, {"sparc=" + release}, {"arm64="}} {
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("run(%q) = %d, want 2 (usage)", args, code)
		}
	}
}
