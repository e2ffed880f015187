package diag

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gateagent/gate"
	"gateagent/health"
	"gateagent/internal/fsaccess"
)

// NameService is the check that answers first: can the gate grant a valid
// code? It reads the same verdict as /healthz (health.Readiness).
const NameService = "service"

// MinDiskFree: less room than this beside the cache and the event log
// cannot grow; grants stop when it must.
const MinDiskFree = 1 << 20

// judgeService turns the gate's verdict into the service check. daemon:
// the verdict of the running agent; otherwise diag's own, on what the
// agent would find if it started, with w its check of the cache's access
// as the agent's user.
func judgeService(r health.Readiness, daemon bool, cachePath string, w *writable) Check {
	c := Check{Name: NameService, Facts: map[string]any{"can_grant": r.OK()}}
	if r.OK() {
		c.Status = Pass
		c.Line = "in service: the gate grants valid codes"
		if !daemon {
			c.Line = "nothing found that would keep the agent from granting once it runs: the cache can be written, certificates are synced, the clock is trusted"
		}
		return c
	}
	var causes []string
	var parts []string
	for _, p := range r.Problems {
		causes = append(causes, p.Cause.String())
		if p.Cause == health.CacheNotWritable && w != nil && w.err != nil {
			parts = append(parts, w.line(cachePath))
			continue
		}
		parts = append(parts, problemLine(p, cachePath))
	}
	c.Facts["causes"] = causes
	c.Status = Fail
	head := "out of service, every code is refused: "
	if !daemon {
		head = "the gate would refuse every code: "
	}
	c.Line = head + strings.Join(parts, "; and ")
	return c
}

// problemLine says what is wrong and what to do about it.
func problemLine(p health.Problem, cachePath string) string {
	dir := filepath.Dir(cachePath)
	switch p.Cause {
	case health.Unresponsive:
		return fmt.Sprintf("the gate controller does not answer (%s): systemd's watchdog restarts the agent within 15 s; if it does not, systemctl restart gateagent and read journalctl -u gateagent", p.Detail)
	case health.NotRecording:
		since := ""
		if !p.Since.IsZero() {
			since = " since " + p.Since.UTC().Format(time.RFC3339)
		}
		return fmt.Sprintf("grants cannot be recorded%s, so none is made (%s): %s; the gate grants again by itself within seconds of a write succeeding", since, p.Detail, storageAdvice(p.Err, dir))
	case health.CacheNotWritable:
		return fmt.Sprintf("the key cache cannot be written (%s): %s", p.Detail, storageAdvice(p.Err, dir))
	case health.BoardFault:
		if strings.Contains(p.What, "relay") {
			return "the relay output fails: check the relay's wiring and power (the agent drives it again every second); see the hardware check"
		}
		return p.What + ": check its wiring, then restart gateagent (the gate stays out of service until then); see the hardware check"
	case health.NeverSynced:
		return "waiting for the first key sync: the gate knows no certificate yet; see the feed check (the gate tries again every few seconds)"
	case health.Stale:
		since := ""
		if !p.Since.IsZero() {
			since = " since " + p.Since.UTC().Format(time.RFC3339)
		}
		return "the key cache is stale" + since + " and refuse_when_stale is set: see the feed check; the gate tries the issuer every few seconds and grants again as soon as it answers"
	case health.ClockUntrusted:
		return p.What + ": see the clock check"
	case health.ClockDisputed:
		return p.What + ": see the clock check (which side is wrong, the offset learnt from the issuer, the last hour's clock refusals); it clears at the next code on time"
	case health.ScannerAbsent:
		return fmt.Sprintf("the scanner is not connected (%s): check its cable and power, and scanner.port; the agent reopens it by itself and is in service again once it does; see the scanner check", p.Detail)
	}
	return p.What
}

// storageAdvice says what to do about a write to dir that failed with err.
func storageAdvice(err error, dir string) string {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Sprintf("the disk is full: free space on %s (df -h %s; old logs: journalctl --vacuum-size=50M)", dir, dir)
	case errors.Is(err, syscall.EROFS):
		return "the file system is read-only; when the kernel remounted it after I/O errors (dmesg says so), the SD card or eMMC is failing: replace it"
	case errors.Is(err, syscall.EIO):
		return "the storage reports I/O errors (dmesg): the SD card or eMMC is failing: replace it"
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("the agent's user may not write there: %s", chownAdvice(nil, dir))
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%s does not exist: %s", dir, chownAdvice(nil, dir))
	}
	return fmt.Sprintf("check the disk holding %s (dmesg, df -h)", dir)
}

// chownAdvice is the command that gives the agent's user its state
// directory back.
func chownAdvice(u *fsaccess.User, dir string) string {
	name, group := "gateagent", "gateagent"
	if u != nil && u.Name != "" {
		name = u.Name
		if u.Group != "" {
			group = u.Group
		}
	}
	return fmt.Sprintf("install -d -o %s -g %s -m 0750 %s && chown -R %s:%s %s (systemd's StateDirectory=gateagent does the same at the agent's next start)",
		name, group, dir, name, group, dir)
}

// AgentUser is the user the agent runs as: configs/gateagent.service's
// User=, which a test keeps in agreement.
const AgentUser = "gateagent"

// writable is whether the agent's user may write the cache: the file
// itself when there is one (the agent opens it read-write, or does not
// start), and its directory (to create the file when there is none, or
// after it was moved aside).
type writable struct {
	checked bool
	user    fsaccess.User
	note    string // how the user was chosen, when not as asked
	method  fsaccess.Method
	err     error
	// dirOnly: the file is writable, only its directory is not: the
	// agent runs, but could not make a new file.
	dirOnly bool
}

// checkWritable checks the cache's file and directory as the agent's user
// name (or, when this machine has no such user, as diag's own).
func checkWritable(path, name string) writable {
	w := writable{checked: true}
	u, err := fsaccess.Lookup(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		if u, err = fsaccess.Current(); err == nil {
			w.note = fmt.Sprintf("no user %s on this machine: checked as %s", name, u.Name)
		}
	}
	if err != nil {
		w.err = err
		return w
	}
	w.user = u
	_, serr := os.Stat(path)
	exists := serr == nil
	if exists {
		if w.method, w.err = fsaccess.Check(path, fsaccess.Read|fsaccess.Write, u); w.err != nil {
			return w
		}
	}
	w.method, w.err = fsaccess.Check(filepath.Dir(path), fsaccess.Write|fsaccess.Search, u)
	w.dirOnly = w.err != nil && exists
	return w
}

// fatal: the agent cannot open or create its cache, so it cannot start.
func (w writable) fatal() bool {
	var d *fsaccess.Denied
	return w.err != nil && !w.dirOnly && errors.As(w.err, &d)
}

// writableLine says why the agent's user cannot write the cache, and what
// to do.
func (w writable) line(path string) string {
	dir := filepath.Dir(path)
	var d *fsaccess.Denied
	what := oneLine(w.err)
	if errors.As(w.err, &d) {
		what = fmt.Sprintf("%s is not writable by %s", d.Path, d.User)
	}
	judged := ""
	if w.method == fsaccess.ModeBits {
		judged = " (judged from mode bits: run diag as root for the kernel's answer)"
	}
	switch {
	case w.dirOnly:
		return fmt.Sprintf("%s%s: the agent runs on the cache file it has, but could not make a new one (after the file is moved aside); %s", what, judged, chownAdvice(&w.user, dir))
	case errors.Is(w.err, syscall.EROFS):
		return fmt.Sprintf("%s: it is on a read-only file system, so the agent cannot open it; %s", what, storageAdvice(w.err, dir))
	case errors.Is(w.err, fs.ErrNotExist):
		return fmt.Sprintf("%s does not exist: the agent cannot create its cache; %s", dir, chownAdvice(&w.user, dir))
	case errors.Is(w.err, fs.ErrPermission):
		return fmt.Sprintf("%s%s: the agent cannot open its cache and does not start; %s", what, judged, chownAdvice(&w.user, dir))
	}
	return fmt.Sprintf("cannot tell whether the agent's user may write %s: %s", dir, oneLine(w.err))
}

// standaloneFault is the controller's fault state as diag, with the agent
// stopped, finds it on the board: an input that cannot be read.
func standaloneFault(openErr error, l inputLevels) *gate.Status {
	switch {
	case openErr != nil:
		return &gate.Status{Fault: "the gate's board does not open, so the agent cannot start"}
	case l.readFailed:
		return &gate.Status{Fault: "an input of the board cannot be read (" + oneLine(l.err) + ")"}
	}
	return nil
}
