package configs

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gateagent/diag"
)

// The files under test, in this directory.
const (
	unitFile     = "gateagent.service"
	rulesFile    = "99-gateagent.rules"
	sysusersFile = "gateagent.sysusers"
	exampleFile  = "gateagent.example.toml"
)

// What the deployment must agree on.
const (
	binary     = "/usr/bin/gateagent" // where the package installs it
	configPath = "/etc/gateagent/gateagent.toml"
	user       = diag.AgentUser // diag checks the cache's access as this user
	// controllerPing is how long the agent waits for its controller to
	// answer before it skips a watchdog pet (agent.go: a.ctrl.Ping(2 *
	// time.Second)). WatchdogSec must leave room for three of them: the
	// agent pets every WatchdogSec/2, and a ping may take up to this.
	controllerPing = 2 * time.Second
	maxWatchdog    = time.Minute // a hung gate must not stay shut longer
)

// debianGroups exist on every Debian system; other groups the deployment
// uses must be created by the sysusers file.
var debianGroups = []string{"dialout"}

// unit is a systemd unit file: section → key → the values assigned, in order.
type unit map[string]map[string][]string

// parseUnit reads the syntax of systemd.syntax(7): [Section] headers,
// Key=Value lines, comments starting with # or ;, and lines continued with
// a trailing backslash. Anything else is an error naming its line.
func parseUnit(text string) (unit, error) {
	u := unit{}
	section := ""
	var cont strings.Builder // a line being continued
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		if cont.Len() > 0 {
			line = cont.String() + line
			cont.Reset()
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" || strings.TrimSpace(key) == "" {
			return nil, fmt.Errorf("line %d: %q is not Key=Value inside a [Section]", i+1, line)
		}
		key = strings.TrimSpace(key)
		u[section][key] = append(u[section][key], strings.TrimSpace(value))
	}
	if cont.Len() > 0 {
		return nil, fmt.Errorf("the last line ends in a backslash")
	}
	return u, nil
}

// get is the value in force: the last assignment ("" when unset).
func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// list is a list setting's items: each assignment's space-separated items,
// an empty assignment clearing those before it.
func (u unit) list(section, key string) []string {
	var items []string
	for _, v := range u[section][key] {
		if v == "" {
			items = nil
			continue
		}
		items = append(items, strings.Fields(v)...)
	}
	return items
}

// parseTimespan reads a systemd time span (systemd.time(7)) such as "15s",
// "15" (seconds), "1min 30s" or "500ms".
func parseTimespan(s string) (time.Duration, error) {
	units := map[string]time.Duration{
		"us": time.Microsecond, "usec": time.Microsecond,
		"ms": time.Millisecond, "msec": time.Millisecond,
		"": time.Second, "s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
		"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	}
	re := regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)`)
	var total time.Duration
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, fmt.Errorf("empty time span")
	}
	for rest != "" {
		m := re.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("time span %q: cannot read %q", s, rest)
		}
		n, _ := strconv.ParseFloat(m[1], 64)
		unit, ok := units[m[2]]
		if !ok {
			return 0, fmt.Errorf("time span %q: unknown unit %q", s, m[2])
		}
		total += time.Duration(n * float64(unit))
		rest = strings.TrimSpace(rest[len(m[0]):])
	}
	return total, nil
}

// example reads the example config's string settings: section → key → value.
// Only `key = "string"` lines are read; that is all these checks need.
func parseExample(text string) map[string]map[string]string {
	sectionRE := regexp.MustCompile(`^\[([a-z0-9_.]+)\]\s*(#.*)?$`)
	stringRE := regexp.MustCompile(`^([a-z0-9_]+)\s*=\s*"([^"]*)"\s*(#.*)?$`)
	ex := map[string]map[string]string{"": {}}
	section := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			section = m[1]
			ex[section] = map[string]string{}
		} else if m := stringRE.FindStringSubmatch(line); m != nil {
			ex[section][m[1]] = m[2]
		}
	}
	return ex
}

// exampleKeys are the references of the example config's [keys]: cache_key
// and every item of fleet_keys.
func exampleKeys(text string) []string {
	var refs []string
	ex := parseExample(text)
	if v := ex["keys"]["cache_key"]; v != "" {
		refs = append(refs, v)
	}
	if m := regexp.MustCompile(`(?m)^fleet_keys\s*=\s*\[([^\]]*)\]`).FindStringSubmatch(text); m != nil {
		for _, q := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(m[1], -1) {
			refs = append(refs, q[1])
		}
	}
	return refs
}

// rule is one udev rule: its key/value pairs in order, and whether it is a
// commented-out example ("#SUBSYSTEM==...") a technician may uncomment.
type rule struct {
	line    int
	example bool
	pairs   []pair
}

type pair struct{ key, op, value string }

func (r rule) get(key, op string) (string, bool) {
	for _, p := range r.pairs {
		if p.key == key && p.op == op {
			return p.value, true
		}
	}
	return "", false
}

// parseRules reads a udev rules file: each rule a comma-separated list of
// KEY[{attr}] OP "value". Lines starting with '#' directly followed by an
// upper-case key are the commented examples and are read too. A line that
// does not parse is an error naming it.
func parseRules(text string) ([]rule, error) {
	pairRE := regexp.MustCompile(`^\s*([A-Z_]+(?:\{[^}]+\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(,|$)`)
	exampleRE := regexp.MustCompile(`^#[A-Z]+[{=!+:]`)
	var rules []rule
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		r := rule{line: i + 1}
		switch {
		case line == "":
			continue
		case exampleRE.MatchString(line):
			r.example = true
			line = line[1:]
		case line[0] == '#':
			continue
		}
		for rest := line; rest != ""; {
			m := pairRE.FindStringSubmatch(rest)
			if m == nil {
				return nil, fmt.Errorf("line %d: cannot read %q", i+1, rest)
			}
			r.pairs = append(r.pairs, pair{m[1], m[2], m[3]})
			rest = strings.TrimSpace(rest[len(m[0]):])
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// sysusers reads a systemd-sysusers file: one []string of fields per entry
// (a quoted GECOS field kept whole).
func parseSysusers(text string) [][]string {
	fieldRE := regexp.MustCompile(`"[^"]*"|\S+`)
	var entries [][]string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		entries = append(entries, fieldRE.FindAllString(line, -1))
	}
	return entries
}

// deployment is the four files, as read from disk or as a test edited them.
type deployment struct {
	unit, rules, sysusers, example string
}

func readDeployment(t *testing.T) deployment {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return deployment{read(unitFile), read(rulesFile), read(sysusersFile), read(exampleFile)}
}

// problems checks the deployment and returns every problem found, each
// naming its file and what to do.
func (d deployment) problems() []string {
	var out []string
	bad := func(file, format string, a ...any) { out = append(out, file+": "+fmt.Sprintf(format, a...)) }

	u, err := parseUnit(d.unit)
	if err != nil {
		return []string{unitFile + ": " + err.Error()}
	}
	rules, err := parseRules(d.rules)
	if err != nil {
		return []string{rulesFile + ": " + err.Error()}
	}
	users := parseSysusers(d.sysusers)
	ex := parseExample(d.example)

	want := func(section, key, value, why string) {
		if got := u.get(section, key); got != value {
			bad(unitFile, "[%s] %s=%s, want %s=%s (%s)", section, key, got, key, value, why)
		}
	}

	// How systemd runs it.
	want("Service", "Type", "notify", "the agent sends READY=1 once the relay is locked and the controller runs")
	want("Service", "NotifyAccess", "main", "only the agent itself may send READY=1 and WATCHDOG=1")
	want("Service", "Restart", "always", "a gate must come back after any exit")
	want("Unit", "StartLimitIntervalSec", "0", "a gate never stops restarting; the key belongs in [Unit]")
	if ws := u.get("Service", "WatchdogSec"); ws == "" {
		bad(unitFile, "no WatchdogSec: systemd would not restart a hung agent")
	} else if d, err := parseTimespan(ws); err != nil {
		bad(unitFile, "WatchdogSec: %v", err)
	} else if d < 3*controllerPing || d > maxWatchdog {
		bad(unitFile, "WatchdogSec=%s, want between %v (three %v controller pings: the agent pets every WatchdogSec/2) and %v", ws, 3*controllerPing, controllerPing, maxWatchdog)
	}

	// Who it runs as, and its directories.
	want("Service", "User", user, "never root")
	want("Service", "Group", user, "the control socket's group")
	want("Service", "StateDirectory", "gateagent", "the key cache's directory /var/lib/gateagent")
	want("Service", "RuntimeDirectory", "gateagent", "the control socket's directory /run/gateagent")
	want("Service", "ConfigurationDirectory", "gateagent", "the config's directory /etc/gateagent")
	groups := u.list("Service", "SupplementaryGroups")
	for _, g := range []string{"dialout", "gpio"} {
		if !slices.Contains(groups, g) {
			bad(unitFile, "SupplementaryGroups=%s lacks %s (dialout: the serial scanner; gpio: the GPIO devices)", strings.Join(groups, " "), g)
		}
	}
	argv := strings.Fields(u.get("Service", "ExecStart"))
	if len(argv) < 2 || strings.TrimLeft(argv[0], "-@:+!") != binary || argv[1] != "run" {
		bad(unitFile, "ExecStart=%s, want %s run --config %s", strings.Join(argv, " "), binary, configPath)
	}
	config := ""
	for i, arg := range argv {
		if v, ok := strings.CutPrefix(arg, "--config="); ok {
			config = v
		} else if arg == "--config" && i+1 < len(argv) {
			config = argv[i+1]
		}
	}
	if config != configPath {
		bad(unitFile, "ExecStart's --config is %q, want %q (where README.md installs it)", config, configPath)
	}
	if dir := "/etc/" + u.get("Service", "ConfigurationDirectory") + "/"; !strings.HasPrefix(config, dir) {
		bad(unitFile, "ExecStart's --config %q lies outside the ConfigurationDirectory %s", config, dir)
	}

	// The keys: every credential the example config names is one the
	// unit loads, sealed.
	loaded := map[string]bool{}
	for _, v := range u["Service"]["LoadCredentialEncrypted"] {
		name, _, _ := strings.Cut(v, ":")
		loaded[name] = true
	}
	if len(u["Service"]["LoadCredential"]) > 0 {
		bad(unitFile, "LoadCredential=%s: a credential in the clear; seal it and use LoadCredentialEncrypted=", strings.Join(u["Service"]["LoadCredential"], " "))
	}
	for _, ref := range exampleKeys(d.example) {
		if strings.HasPrefix(ref, "/") {
			bad(exampleFile, "[keys] %q is a key file: the example names the unit's sealed credentials", ref)
		} else if !loaded[ref] {
			bad(unitFile, "no LoadCredentialEncrypted=%s: the example config's [keys] names it, and the agent would not find it", ref)
		}
	}

	// The sandbox, and the devices it must still reach.
	want("Service", "ProtectSystem", "strict", "the file system read-only but for the agent's own directories")
	want("Service", "NoNewPrivileges", "yes", "no setuid program may raise its privileges")
	want("Service", "DevicePolicy", "closed", "only the devices listed in DeviceAllow")
	want("Service", "ProtectKernelTunables", "no", "periph falls back to sysfs GPIO, which needs /sys writable; see the comment in the unit")
	if v := u.get("Service", "PrivateDevices"); v == "yes" || v == "true" || v == "1" {
		bad(unitFile, "PrivateDevices=%s hides the scanner and the GPIO devices", v)
	}
	if v := u.get("Service", "ProcSubset"); v == "pid" {
		bad(unitFile, "ProcSubset=pid hides /proc/cpuinfo and /proc/device-tree, which periph reads to recognise the board")
	}
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if v, set := u["Service"][key]; !set || len(u.list("Service", key)) > 0 {
			bad(unitFile, "%s=%s, want it set and empty (no capabilities)", key, strings.Join(v, " "))
		}
	}
	families := u.list("Service", "RestrictAddressFamilies")
	for _, f := range []string{"AF_UNIX", "AF_INET", "AF_INET6"} {
		if !slices.Contains(families, f) {
			bad(unitFile, "RestrictAddressFamilies=%s lacks %s (systemd notify and the control socket; the key feed over HTTPS)", strings.Join(families, " "), f)
		}
	}
	var allow []string // device specifiers allowed read-write
	for _, v := range u["Service"]["DeviceAllow"] {
		f := strings.Fields(v)
		if len(f) != 2 || strings.Trim(f[1], "rwm") != "" {
			bad(unitFile, "DeviceAllow=%s: want a device and its access, e.g. char-ttyUSB rw", v)
			continue
		}
		if f[0] == "/dev/mem" || f[0] == "char-mem" {
			bad(unitFile, "DeviceAllow=%s: all of physical memory; the agent must never have it", v)
		}
		if strings.Contains(f[1], "r") && strings.Contains(f[1], "w") {
			allow = append(allow, f[0])
		}
	}
	needs := []struct{ spec, what string }{
		{"char-ttyUSB", "USB serial scanners"}, {"char-ttyACM", "USB CDC scanners"}, {"char-ttyS", "scanners on the board's UART"},
		{"char-gpiochip", "the GPIO character devices /dev/gpiochipN"},
	}
	for _, n := range needs {
		if !slices.Contains(allow, n.spec) {
			bad(unitFile, "no DeviceAllow=%s rw: %s would be refused", n.spec, n.what)
		}
	}
	// A device group's driver must be loaded when the unit starts, or
	// systemd leaves the group out of the allow list (systemd.resource-control(5)).
	for spec, module := range map[string]string{"char-ttyUSB": "usbserial", "char-ttyACM": "cdc_acm"} {
		svc := "modprobe@" + module + ".service"
		if slices.Contains(allow, spec) && (!slices.Contains(u.list("Unit", "Wants"), svc) || !slices.Contains(u.list("Unit", "After"), svc)) {
			bad(unitFile, "DeviceAllow=%s needs Wants= and After=%s in [Unit]: without the driver loaded at start, a scanner plugged in later is refused", spec, svc)
		}
	}

	// The example config's paths lie in the directories systemd makes.
	cache := ex["gate"]["cache"]
	if dir := "/var/lib/" + u.get("Service", "StateDirectory") + "/"; !strings.HasPrefix(cache, dir) || path.Clean(cache) != cache {
		bad(exampleFile, "[gate] cache = %q: want it under the unit's StateDirectory %s (cache = \"/var/lib/gateagent/cache.db\")", cache, dir)
	}
	socket := ex["control"]["socket"]
	if dir := "/run/" + u.get("Service", "RuntimeDirectory") + "/"; !strings.HasPrefix(socket, dir) || path.Clean(socket) != socket {
		bad(exampleFile, "[control] socket = %q: want it under the unit's RuntimeDirectory %s (socket = \"/run/gateagent/control.sock\")", socket, dir)
	}

	// udev: the scanner's name is the example config's scanner.port, and
	// the devices land in the groups the unit gives the agent.
	port := ex["scanner"]["port"]
	scanners := 0
	for _, r := range rules {
		if sub, _ := r.get("SUBSYSTEM", "=="); sub != "tty" {
			continue
		}
		if !r.example {
			scanners++
		}
		link, ok := r.get("SYMLINK", "+=")
		if !ok {
			bad(rulesFile, "line %d: a scanner rule without SYMLINK+=", r.line)
		} else if "/dev/"+link != port {
			bad(rulesFile, "line %d: SYMLINK+=%q names /dev/%s, but the example config's scanner.port is %q", r.line, link, link, port)
		}
		if mode, _ := r.get("MODE", "="); mode != "0660" {
			bad(rulesFile, "line %d: MODE=%q, want \"0660\" (the owner and its group only)", r.line, mode)
		}
		if g, _ := r.get("GROUP", "="); !slices.Contains(groups, g) {
			bad(rulesFile, "line %d: GROUP=%q is not one of the unit's SupplementaryGroups (%s): the agent could not open the scanner", r.line, g, strings.Join(groups, " "))
		}
	}
	if scanners == 0 {
		bad(rulesFile, "no active scanner rule (SUBSYSTEM==\"tty\" ... SYMLINK+=)")
	}
	gpiochip := false
	for _, r := range rules {
		if k, _ := r.get("KERNEL", "=="); k == "gpiochip*" && !r.example {
			if g, _ := r.get("GROUP", "="); g != "" {
				gpiochip = true
				if !slices.Contains(groups, g) {
					bad(rulesFile, "line %d: /dev/gpiochip* in group %q, not one of the unit's SupplementaryGroups", r.line, g)
				}
			}
		}
		if g, ok := r.get("GROUP", "="); ok && !slices.Contains(debianGroups, g) && !slices.ContainsFunc(users, func(e []string) bool {
			return len(e) >= 2 && e[0] == "g" && e[1] == g
		}) {
			bad(rulesFile, "line %d: GROUP=%q is neither Debian's nor made by %s", r.line, g, sysusersFile)
		}
	}
	if !gpiochip {
		bad(rulesFile, "no rule puts /dev/gpiochip* in a group (KERNEL==\"gpiochip*\", GROUP=\"gpio\")")
	}

	// sysusers: the unit's user, with its home in the state directory, and
	// every supplementary group either Debian's or made here.
	home := ""
	for _, e := range users {
		if len(e) >= 5 && e[0] == "u" && e[1] == user {
			home = e[4]
		}
	}
	if want := "/var/lib/" + u.get("Service", "StateDirectory"); home != want {
		bad(sysusersFile, "user %s: home %q, want a line `u %s - \"...\" %s`", user, home, user, want)
	}
	for _, g := range groups {
		made := slices.ContainsFunc(users, func(e []string) bool { return len(e) >= 2 && e[0] == "g" && e[1] == g })
		member := slices.ContainsFunc(users, func(e []string) bool { return len(e) >= 3 && e[0] == "m" && e[1] == user && e[2] == g })
		if !made && !slices.Contains(debianGroups, g) {
			bad(sysusersFile, "group %s (in the unit's SupplementaryGroups) is not made: add `g %s -`", g, g)
		}
		if !member {
			bad(sysusersFile, "user %s is not in group %s: add `m %s %s`", user, g, user, g)
		}
	}
	return out
}

func TestDeploy(t *testing.T) {
	for _, p := range readDeployment(t).problems() {
		t.Error(p)
	}
}

// TestDeployCatchesMistakes edits the files as a careless hand might and
// checks that each check above notices: every assertion can fail.
func TestDeployCatchesMistakes(t *testing.T) {
	good := readDeployment(t)
	for _, c := range []struct {
		file     *string // which of the deployment's texts to edit (in a copy)
		old, new string
		want     string
	}{
		{nil, "Type=notify", "Type=simple", "Type=simple, want Type=notify"},
		{nil, "NotifyAccess=main", "NotifyAccess=all", "NotifyAccess=all, want"},
		{nil, "Restart=always", "Restart=on-failure", "Restart=on-failure, want Restart=always"},
		{nil, "StartLimitIntervalSec=0\n", "", "StartLimitIntervalSec=, want StartLimitIntervalSec=0"},
		{nil, "WatchdogSec=15s", "WatchdogSec=5s", "WatchdogSec=5s, want between 6s"},
		{nil, "WatchdogSec=15s", "WatchdogSec=2min", "WatchdogSec=2min, want between"},
		{nil, "WatchdogSec=15s", "WatchdogSec=soon", "WatchdogSec: time span"},
		{nil, "WatchdogSec=15s\n", "", "no WatchdogSec"},
		{nil, "User=gateagent", "User=root", "User=root, want User=gateagent"},
		{nil, "StateDirectory=gateagent", "StateDirectory=gate", "StateDirectory=gate, want"},
		{nil, "StateDirectory=gateagent", "StateDirectory=gate", `cache = "/var/lib/gateagent/cache.db": want it under the unit's StateDirectory /var/lib/gate/`},
		{nil, "RuntimeDirectory=gateagent", "RuntimeDirectory=gate", "socket = \"/run/gateagent/control.sock\": want it under"},
		{nil, "SupplementaryGroups=dialout gpio", "SupplementaryGroups=dialout", "lacks gpio"},
		{nil, "SupplementaryGroups=dialout gpio", "SupplementaryGroups=gpio", "lacks dialout"},
		{nil, "--config /etc/gateagent/gateagent.toml", "--config /etc/gateagent.toml", `--config is "/etc/gateagent.toml"`},
		{nil, "--config /etc/gateagent/gateagent.toml", "--config=/etc/gateagent/gateagent.toml", ""}, // the other spelling is fine
		{nil, "ExecStart=/usr/bin/gateagent run", "ExecStart=/usr/local/bin/gateagent run", "want /usr/bin/gateagent run"},
		{nil, "ProtectSystem=strict", "ProtectSystem=full", "ProtectSystem=full, want ProtectSystem=strict"},
		{nil, "NoNewPrivileges=yes", "NoNewPrivileges=no", "NoNewPrivileges=no, want"},
		{nil, "DevicePolicy=closed", "DevicePolicy=auto", "DevicePolicy=auto, want DevicePolicy=closed"},
		{nil, "DeviceAllow=char-ttyUSB rw\n", "", "no DeviceAllow=char-ttyUSB rw"},
		{nil, "DeviceAllow=char-ttyACM rw", "DeviceAllow=char-ttyACM r", "no DeviceAllow=char-ttyACM rw"},
		{nil, "DeviceAllow=char-gpiochip rw", "DeviceAllow=char-gpio rw", "no DeviceAllow=char-gpiochip rw"},
		{nil, "DeviceAllow=char-gpiochip rw", "DeviceAllow=char-gpiochip rw\nDeviceAllow=/dev/mem rw", "all of physical memory"},
		{nil, "Wants=modprobe@usbserial.service modprobe@cdc_acm.service", "Wants=modprobe@usbserial.service", "needs Wants= and After=modprobe@cdc_acm.service"},
		{nil, "PrivateDevices=no", "PrivateDevices=yes", "hides the scanner"},
		{nil, "ProtectKernelTunables=no", "ProtectKernelTunables=yes", "sysfs GPIO"},
		{nil, "ProtectProc=invisible", "ProtectProc=invisible\nProcSubset=pid", "ProcSubset=pid"},
		{nil, "CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_SYS_RAWIO\n", "CapabilityBoundingSet=CAP_SYS_RAWIO, want it set and empty"},
		{nil, "AmbientCapabilities=\n", "", "AmbientCapabilities=, want it set and empty"},
		{nil, "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "RestrictAddressFamilies=AF_INET AF_INET6", "lacks AF_UNIX"},
		{nil, "[Service]", "Service", "is not Key=Value inside a [Section]"},
		{nil, "LoadCredentialEncrypted=gateagent-fleet-key\n", "", "no LoadCredentialEncrypted=gateagent-fleet-key"},
		{nil, "LoadCredentialEncrypted=gateagent-cache-key", "LoadCredential=gateagent-cache-key", "a credential in the clear"},
		{&good.example, `cache_key = "gateagent-cache-key"`, `cache_key = "gateagent-key"`, "no LoadCredentialEncrypted=gateagent-key"},
		{&good.example, `fleet_keys = ["gateagent-fleet-key"]`, `fleet_keys = ["gateagent-fleet-key", "gateagent-fleet-key-2"]`, "no LoadCredentialEncrypted=gateagent-fleet-key-2"},
		{&good.example, `cache_key = "gateagent-cache-key"`, `cache_key = "/etc/gateagent/cache.key"`, "is a key file"},
		{&good.example, `cache = "/var/lib/gateagent/cache.db"`, `cache = "/var/cache/gateagent.db"`, `cache = "/var/cache/gateagent.db": want it under`},
		{&good.example, `cache = "/var/lib/gateagent/cache.db"`, `cache = "/var/lib/gateagent/../cache.db"`, `want it under`},
		{&good.example, `port = "/dev/gate-scanner"`, `port = "/dev/ttyUSB0"`, `the example config's scanner.port is "/dev/ttyUSB0"`},
		{&good.rules, `ATTRS{idVendor}=="1eab", SYMLINK+="gate-scanner"`, `ATTRS{idVendor}=="1eab", SYMLINK+="scanner"`, `SYMLINK+="scanner" names /dev/scanner`},
		{&good.rules, `#SUBSYSTEM=="tty", KERNEL=="ttyS1", SYMLINK+="gate-scanner"`, `#SUBSYSTEM=="tty", KERNEL=="ttyS1", SYMLINK+="qr"`, `SYMLINK+="qr" names /dev/qr`}, // a commented example too
		{&good.rules, `ATTRS{idVendor}=="0c2e", SYMLINK+="gate-scanner", GROUP="dialout", MODE="0660"`, `ATTRS{idVendor}=="0c2e", SYMLINK+="gate-scanner", GROUP="dialout", MODE="0666"`, `MODE="0666", want "0660"`},
		{&good.rules, `ATTRS{idVendor}=="05e0", SYMLINK+="gate-scanner", GROUP="dialout"`, `ATTRS{idVendor}=="05e0", SYMLINK+="gate-scanner", GROUP="plugdev"`, `GROUP="plugdev" is not one of the unit's SupplementaryGroups`},
		{&good.rules, `KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"`, `KERNEL=="gpiochip*", MODE="0660"`, "no rule puts /dev/gpiochip* in a group"},
		{&good.rules, `KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"`, `KERNEL=="gpiochip*", GROUP="gpio" MODE="0660"`, "cannot read"},
		{&good.sysusers, "m     gateagent  gpio\n", "", "user gateagent is not in group gpio"},
		{&good.sysusers, "g     gpio       -\n", "", "group gpio (in the unit's SupplementaryGroups) is not made"},
		{&good.sysusers, "g     gpio       -\n", "", `GROUP="gpio" is neither Debian's nor made by`},
		{&good.sysusers, `"ticket gate agent"  /var/lib/gateagent`, `"ticket gate agent"  /home/gateagent`, `home "/home/gateagent", want`},
	} {
		d := good // a copy
		target := &d.unit
		switch c.file {
		case &good.example:
			target = &d.example
		case &good.rules:
			target = &d.rules
		case &good.sysusers:
			target = &d.sysusers
		}
		edited, ok := replaceOutsideComments(*target, c.old, c.new)
		if !ok {
			t.Errorf("the files no longer contain %q: update this test", c.old)
			continue
		}
		*target = edited
		problems := d.problems()
		if c.want == "" {
			if len(problems) > 0 {
				t.Errorf("%q → %q: problems %q, want none", c.old, c.new, problems)
			}
			continue
		}
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, c.want) }) {
			t.Errorf("%q → %q: problems %q, want one saying %q", c.old, c.new, problems, c.want)
		}
	}
}

// replaceOutsideComments replaces the first occurrence of old that is not
// inside a comment (old itself may be a commented-out line, "#...").
func replaceOutsideComments(text, old, new string) (string, bool) {
	prefix := `(?m)^([^#\n]*?)`
	if strings.HasPrefix(old, "#") {
		prefix = `(?m)^()`
	}
	loc := regexp.MustCompile(prefix + regexp.QuoteMeta(old)).FindStringSubmatchIndex(text)
	if loc == nil {
		return text, false
	}
	return text[:loc[3]] + new + text[loc[1]:], true
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit("# comment\n[Service]\n; comment\nExecStart=/bin/a \\\n  --b c\nDeviceAllow=x r\nDeviceAllow=\nDeviceAllow=y rw\nEnvironment= A=1 \n")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.get("Service", "ExecStart"); got != "/bin/a  --b c" {
		t.Errorf("continued line: %q", got)
	}
	if got := u.list("Service", "DeviceAllow"); !slices.Equal(got, []string{"y", "rw"}) {
		t.Errorf("an empty assignment resets a list: %q", got)
	}
	if got := u.get("Service", "Environment"); got != "A=1" {
		t.Errorf("Environment: %q", got)
	}
	for _, bad := range []string{"Type=notify\n", "[Service]\nType notify\n", "[Service]\nType=a \\"} {
		if _, err := parseUnit(bad); err == nil {
			t.Errorf("parseUnit(%q): no error", bad)
		}
	}
	for in, want := range map[string]time.Duration{"15s": 15 * time.Second, "15": 15 * time.Second, "1min 30s": 90 * time.Second, "500ms": 500 * time.Millisecond, "2h": 2 * time.Hour} {
		if got, err := parseTimespan(in); err != nil || got != want {
			t.Errorf("parseTimespan(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "soon", "5 fortnights"} {
		if _, err := parseTimespan(in); err == nil {
			t.Errorf("parseTimespan(%q): no error", in)
		}
	}
}

// TestUnitVerifies runs `systemd-analyze verify` on the unit, when the tool
// is installed: it knows every key of the installed systemd, which the
// checks above do not. The binary is not installed here, so the copy runs
// /bin/true instead (verify insists that the command exists).
func TestUnitVerifies(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the unit's keys are not checked against systemd")
	}
	text, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "ExecStart="+binary+" ") {
		t.Fatalf("%s: no ExecStart=%s", unitFile, binary)
	}
	unitCopy := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(unitCopy, []byte(strings.Replace(string(text), "ExecStart="+binary+" ", "ExecStart=/bin/true ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", "--man=no", unitCopy).CombinedOutput()
	var problems []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		// Lines about the unit file itself; other units the verifier
		// loads (targets, modprobe@) are the machine's business.
		if line := sc.Text(); strings.Contains(line, unitFile) {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
}

// TestSysusers runs systemd-sysusers on the file into an empty root, when
// the tool is installed (and we are root, as it chowns what it makes).
func TestSysusers(t *testing.T) {
	tool, err := exec.LookPath("systemd-sysusers")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs systemd-sysusers and root")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	file, err := filepath.Abs(sysusersFile)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "--root="+root, file).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if !regexp.MustCompile(`(?m)^gateagent:x:\d+:\d+:ticket gate agent:/var/lib/gateagent:/usr/sbin/nologin$`).Match(passwd) {
		t.Errorf("passwd:\n%s", passwd)
	}
	for _, g := range []string{"gpio", "dialout"} {
		if !regexp.MustCompile(`(?m)^` + g + `:x:\d+:(.*,)?gateagent(,.*)?$`).Match(group) {
			t.Errorf("gateagent is not in group %s:\n%s", g, group)
		}
	}
}
