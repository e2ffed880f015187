package configs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The files the Debian package (packaging/nfpm.yaml) and make install add
// besides the four of deploy_test.go.
const (
	tmpfilesFile = "gateagent.tmpfiles"
	// examplePath is where the package installs the unedited example, which
	// the unit's ExecCondition compares the config with.
	examplePath = "/usr/share/gateagent/gateagent.example.toml"
)

// execCondition returns the shell script of the unit's
// ExecCondition=/bin/sh -c '...'.
func execCondition(t *testing.T) string {
	t.Helper()
	u, err := parseUnit(readDeployment(t).unit)
	if err != nil {
		t.Fatal(err)
	}
	line := u.get("Service", "ExecCondition")
	script, ok := strings.CutPrefix(line, "/bin/sh -c '")
	if !ok || !strings.HasSuffix(script, "'") || strings.Count(script, "'") != 1 {
		t.Fatalf("ExecCondition=%s, want /bin/sh -c '...' (one single-quoted script)", line)
	}
	script = strings.TrimSuffix(script, "'")
	if strings.ContainsAny(script, "$%") {
		t.Fatalf("ExecCondition's script %q has $ or %%, which systemd would expand", script)
	}
	return script
}

// TestExecConditionSkipsTheUneditedExample runs the unit's ExecCondition
// script with sh, on files standing in for the config and the installed
// example: the start is skipped (exit 1, a line saying what to do) only
// while the config is the example.
func TestExecConditionSkipsTheUneditedExample(t *testing.T) {
	script := execCondition(t)
	for _, p := range []string{configPath, examplePath} {
		if !strings.Contains(script, p) {
			t.Fatalf("ExecCondition's script does not name %s: %q", p, script)
		}
	}
	example, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name            string
		config, example []byte // nil: the file is missing
		skip            bool
	}{
		{"unedited", example, example, true},
		{"edited", append(bytes.Clone(example), "# gate GZN-E12\n"...), example, false},
		{"one byte changed", bytes.Replace(example, []byte(`"GZN-E07"`), []byte(`"GZN-E08"`), 1), example, false},
		{"config missing: the agent says so", nil, example, false},
		{"example missing (an older make install)", example, nil, false},
	} {
		dir := t.TempDir()
		files := map[string][]byte{filepath.Join(dir, "gateagent.toml"): c.config, filepath.Join(dir, "example.toml"): c.example}
		for path, text := range files {
			if text != nil {
				if err := os.WriteFile(path, text, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		s := strings.ReplaceAll(script, configPath, filepath.Join(dir, "gateagent.toml"))
		s = strings.ReplaceAll(s, examplePath, filepath.Join(dir, "example.toml"))
		var stderr bytes.Buffer
		cmd := exec.Command("/bin/sh", "-c", s)
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case c.skip && (!errors.As(err, &exit) || exit.ExitCode() != 1):
			t.Errorf("%s: %v, want exit 1 (systemd skips the start)", c.name, err)
		case c.skip && !strings.Contains(stderr.String(), "is the unedited example") || c.skip && !strings.Contains(stderr.String(), "systemctl start gateagent"):
			t.Errorf("%s: stderr %q, want it to say the config is the unedited example and what to do", c.name, stderr.String())
		case !c.skip && err != nil:
			t.Errorf("%s: %v (stderr %q), want exit 0 (the start goes on)", c.name, err, stderr.String())
		}
	}
}

// tmpfilesEntries reads a tmpfiles.d file: the fields of each line.
func tmpfilesEntries(t *testing.T) [][]string {
	t.Helper()
	text, err := os.ReadFile(tmpfilesFile)
	if err != nil {
		t.Fatal(err)
	}
	var entries [][]string
	for _, line := range strings.Split(string(text), "\n") {
		if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
			entries = append(entries, strings.Fields(line))
		}
	}
	return entries
}

// TestTmpfilesMakesTheStateDirectory: the tmpfiles entry makes the unit's
// StateDirectory with its mode, user and group, so that run --check and
// diag find it before the first start.
func TestTmpfilesMakesTheStateDirectory(t *testing.T) {
	u, err := parseUnit(readDeployment(t).unit)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"d", "/var/lib/" + u.get("Service", "StateDirectory"), u.get("Service", "StateDirectoryMode"),
		u.get("Service", "User"), u.get("Service", "Group"), "-"}
	entries := tmpfilesEntries(t)
	if len(entries) != 1 || strings.Join(entries[0], " ") != strings.Join(want, " ") {
		t.Errorf("%s: entries %q, want one: %q (the unit's StateDirectory, StateDirectoryMode, User, Group)", tmpfilesFile, entries, want)
	}
}

// TestTmpfilesAfterSysusers applies the sysusers file and then the
// tmpfiles file to an empty root, as the package's postinst does, when the
// tools are installed and we are root: the directory is made, owned by the
// user just created.
func TestTmpfilesAfterSysusers(t *testing.T) {
	sysusers, err1 := exec.LookPath("systemd-sysusers")
	tmpfiles, err2 := exec.LookPath("systemd-tmpfiles")
	if err1 != nil || err2 != nil || os.Geteuid() != 0 {
		t.Skip("needs systemd-sysusers, systemd-tmpfiles and root")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{{sysusers, sysusersFile}, {tmpfiles, "--create", tmpfilesFile}} {
		file, err := filepath.Abs(c[len(c)-1])
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"--root=" + root}, c[1:len(c)-1]...)
		if out, err := exec.Command(c[0], append(args, file)...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", filepath.Base(c[0]), err, out)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "var/lib/gateagent"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Errorf("/var/lib/gateagent: %v, want a directory 0750", fi.Mode())
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("/var/lib/gateagent: no owner in %T", fi.Sys())
	}
	uid, gid := strconv.FormatUint(uint64(st.Uid), 10), strconv.FormatUint(uint64(st.Gid), 10)
	wantLine := "gateagent:x:" + uid + ":" + gid + ":"
	if !strings.Contains(string(passwd), "\n"+wantLine) && !strings.HasPrefix(string(passwd), wantLine) {
		t.Errorf("/var/lib/gateagent owned by %s:%s, which is not the user gateagent of\n%s", uid, gid, passwd)
	}
}
