package diag

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/event"
	"gateagent/hw"
	"gateagent/internal/kclock"
	"gateagent/internal/plural"
	"gateagent/keysync"
	"gateagent/metrics"
	"gateagent/scanner"
	"gateagent/verify"
)

// The checks, in the order a report lists them. Each judge below turns
// facts (gathered by the daemon or by diag itself) into one Check, so both
// modes say the same thing about the same state.
const (
	NameConfig   = "config"
	NameAgent    = "agent" // only when an agent holds the gate but does not answer
	NameHardware = "hardware"
	NameScanner  = "scanner"
	NameClock    = "clock"
	NameCache    = "cache"
	NameFeed     = "feed"
	NameBacklog  = "backlog"
	NameLatency  = "latency"
)

// Thresholds of the judges.
const (
	// ClockOffsetWarn: a gate clock further than this from the issuer's
	// is corrected, but its time sync is broken.
	ClockOffsetWarn = 30 * time.Second
	// DriftMinScans is how many authentic scans the drift verdict needs.
	DriftMinScans = 20
	// driftScans is how many of the newest scans standalone diag reads
	// from the event log (the running agent keeps 256).
	driftScans = 256
	// BacklogWarnAge: events older than this not yet uploaded.
	BacklogWarnAge = time.Hour
	// DiskFreeWarn: less room than this beside the cache.
	DiskFreeWarn = 100 << 20
	// LatencyWarn: a p99 scan-to-relay above this is felt by passengers.
	LatencyWarn = 300 * time.Millisecond
)

func judgeConfig(path string, cfg *config.Config, err error) Check {
	c := Check{Name: NameConfig, Facts: map[string]any{"file": path}}
	if err != nil {
		c.Status, c.Line = Fail, fmt.Sprintf("%v: fix the file, then check it with gateagent run --config %s --check", oneLine(err), path)
		return c
	}
	c.Status = Pass
	c.Line = fmt.Sprintf("%s is good: gate %s, %s, scanner %s, hardware %s", filepath.Base(path), cfg.Gate.ID, cfg.Gate.Direction, cfg.Scanner.Kind, cfg.HW.Kind)
	c.Facts["gate"], c.Facts["direction"] = cfg.Gate.ID, cfg.Gate.Direction
	return c
}

// inputLevels reads the board's inputs for the hardware check.
type inputLevels struct {
	passage, emergency       bool
	hasEmergency, readFailed bool
	err                      error
}

func readInputs(b *hw.Board) inputLevels {
	var l inputLevels
	var err error
	if l.passage, err = b.Passage.Active(); err != nil {
		l.readFailed, l.err = true, fmt.Errorf("%s: %w", b.Passage.Name(), err)
	}
	if b.Emergency != nil {
		l.hasEmergency = true
		if l.emergency, err = b.Emergency.Active(); err != nil {
			l.readFailed, l.err = true, fmt.Errorf("%s: %w", b.Emergency.Name(), err)
		}
	}
	return l
}

// judgeHardware judges the board: state is the running controller's
// ("" when diag opened the board itself, which drives every output off).
func judgeHardware(kind string, b *hw.Board, openErr error, state string) Check {
	c := Check{Name: NameHardware, Facts: map[string]any{"kind": kind}}
	if openErr != nil {
		c.Status = Fail
		var missing []string
		for _, e := range hw.PinErrors(openErr) {
			if errors.Is(e, hw.ErrNoPin) {
				missing = append(missing, fmt.Sprintf("%s (%s)", e.Pin, e.Key()))
			}
		}
		if len(missing) > 0 {
			c.Facts["missing_pins"] = missing
			c.Line = fmt.Sprintf("no such pin on this board: %s: check the pin names in the config's [hw] section against the board's pinout (gpioinfo lists the lines)", strings.Join(missing, ", "))
			return c
		}
		c.Line = fmt.Sprintf("%v: check the config's [hw] section, the wiring, and that the agent's user is in group gpio", oneLine(openErr))
		return c
	}
	l := readInputs(b)
	c.Facts["passage_active"] = l.passage
	if l.hasEmergency {
		c.Facts["emergency_active"] = l.emergency
	}
	switch {
	case l.readFailed:
		c.Status, c.Line = Fail, fmt.Sprintf("cannot read an input: %v: check its wiring", oneLine(l.err))
	case l.emergency:
		c.Status, c.Line = Warn, "emergency input engaged: the gate is held open for free passage; release it at the fire panel if that is not intended"
	case l.passage && state != "" && state != "idle":
		c.Status, c.Line = Pass, fmt.Sprintf("outputs open; the gate is %s and its passage sensor sees the passenger", state)
	case l.passage:
		c.Status, c.Line = Warn, "passage sensor active: someone is in the passage, or the sensor is blocked or faulty; clear it and watch gateagent diag sensors"
	default:
		c.Status = Pass
		names := []string{}
		for _, o := range b.Outputs() {
			names = append(names, o.Name())
		}
		if state == "" {
			c.Line = fmt.Sprintf("outputs %s open and off; passage clear", strings.Join(names, ", "))
		} else {
			c.Line = fmt.Sprintf("outputs %s open, the gate %s; passage clear", strings.Join(names, ", "), state)
		}
		if l.hasEmergency {
			c.Line += "; emergency input released"
		}
		if kind == "sim" {
			c.Line += " (simulated board: no real turnstile)"
		}
	}
	return c
}

// judgeScannerPort judges an attempt to open the scanner's port (the
// daemon stopped).
func judgeScannerPort(cfg *config.Config, err error) Check {
	c := Check{Name: NameScanner, Facts: map[string]any{"kind": cfg.Scanner.Kind}}
	if cfg.Scanner.Kind == "images" {
		c.Facts["dir"] = cfg.Scanner.ImageDir
		if err != nil {
			c.Status, c.Line = Fail, fmt.Sprintf("image directory %s: %v: create it and let the camera write there", cfg.Scanner.ImageDir, oneLine(err))
			return c
		}
		c.Status, c.Line = Pass, fmt.Sprintf("image directory %s is there", cfg.Scanner.ImageDir)
		return c
	}
	c.Facts["port"] = cfg.Scanner.Port
	if err != nil {
		// The scanner's own message names the cause and what to do.
		msg := strings.TrimPrefix(oneLine(err), "scanner: open "+cfg.Scanner.Port+": ")
		c.Status, c.Line = Fail, fmt.Sprintf("port %s does not open: %s", cfg.Scanner.Port, msg)
		if errors.Is(err, fs.ErrNotExist) {
			c.Line += " (ls -l " + cfg.Scanner.Port + "; the udev rule in configs/ gives a USB scanner that name)"
		}
		return c
	}
	c.Status = Pass
	c.Line = fmt.Sprintf("port %s opens at %d baud, %d data bits, parity %s, %d stop bits; run gateagent diag scan to read a code", cfg.Scanner.Port,
		cfg.Scanner.Baud, cfg.Scanner.DataBits, cfg.Scanner.Parity, cfg.Scanner.StopBits)
	return c
}

// judgeScannerLive judges the running scanner's counters.
func judgeScannerLive(cfg *config.Config, st scanner.Stats, serial bool, now time.Time) Check {
	if !serial {
		return judgeScannerPort(cfg, nil)
	}
	c := Check{Name: NameScanner, Facts: map[string]any{"port": cfg.Scanner.Port, "connected": st.Connected, "lines": st.Lines,
		"codes": st.Codes, "rejected": st.Rejected, "reconnects": st.Reconnects, "overlong": st.Overlong,
		"terminator": cfg.Scanner.Terminator, "endings": map[string]uint64{"cr": st.Endings.CR, "lf": st.Endings.LF, "crlf": st.Endings.CRLF}}}
	if !st.LastScan.IsZero() {
		c.Facts["last_scan"] = st.LastScan
	}
	if sent := st.Endings.Sent(); sent != "" {
		c.Facts["sends"] = sent
	}
	if !st.Connected {
		c.Status = Fail
		c.Line = fmt.Sprintf("port %s not connected (%s): check the scanner's cable and power; the agent reopens it by itself", cfg.Scanner.Port, orDash(st.LastError))
		return c
	}
	last := "no scan yet"
	if !st.LastScan.IsZero() {
		last = "last scan " + ago(now, st.LastScan)
	}
	c.Status = Pass
	c.Line = fmt.Sprintf("port %s connected: %s read, %s, %s, %s", cfg.Scanner.Port, plural.N(st.Codes, "code", "codes"),
		plural.N(st.Rejected, "rejected line", "rejected lines"), last, plural.N(st.Reconnects, "reconnect", "reconnects"))
	if st.Overlong > 0 {
		c.Line += ", " + plural.N(st.Overlong, "over-long line", "over-long lines") + " dropped"
	}
	if sent := sentText(st.Endings); sent != "" {
		c.Line += "; the scanner ends codes with " + sent
	}
	// The setting must cut every line where the scanner ends it: a
	// scanner sending CRLF to a gate set to cr has every code after the
	// first start with an LF, refused as MALFORMED.
	term, err := scanner.ParseTerminator(cfg.Scanner.Terminator)
	if err == nil && !term.Ends(st.Endings) {
		c.Status = Warn
		fix := `set scanner.terminator = "auto"`
		if sent := st.Endings.Sent(); sent != "mixed" {
			fix += fmt.Sprintf(` (or %q)`, sent)
		}
		c.Line += fmt.Sprintf(" but scanner.terminator is %q, which leaves a terminator's byte in the codes (refused as MALFORMED): %s and restart the agent", term, fix)
	}
	return c
}

// sentText says which line endings a scanner sends, from their counts.
func sentText(e scanner.Endings) string {
	switch e.Sent() {
	case "":
		return ""
	case "mixed":
		return fmt.Sprintf("mixed endings (%d CR, %d LF, %d CRLF)", e.CR, e.LF, e.CRLF)
	}
	return strings.ToUpper(e.Sent())
}

// clockFacts is what the clock check looks at.
type clockFacts struct {
	raw, trustedAfter time.Time
	offset            time.Duration
	offsetKnown       bool
	offsetFrom        string // "issuer now" or "learnt by the daemon"
	// daemon: the running agent checks codes on raw+offset once it has
	// learnt an offset; otherwise the agent will, once it runs.
	daemon      bool
	offsets     []int64
	offsetsFrom string
	// kernel is whether the gate's kernel clock is synchronised (NTP),
	// unknown when kernelErr is set.
	kernel    kclock.State
	kernelErr error
	// refusals are the codes refused for the clock in the last hour,
	// counted by the agent or read from the event log (refusalsFrom).
	refusals      metrics.ClockRefusals
	refusalsKnown bool
	refusalsFrom  string
}

// ClockOffsetFail: an offset this large puts every code outside the step
// window (±1 minute by default).
const ClockOffsetFail = 2 * time.Minute

func judgeClock(f clockFacts) Check {
	c := Check{Name: NameClock, Facts: map[string]any{"gate_time": f.raw, "trusted_after": f.trustedAfter}}
	if f.offsetKnown {
		c.Facts["offset_to_issuer"] = f.offset.String()
		c.Facts["offset_applied"] = f.daemon
	}
	d := learnDrift(f.offsets)
	c.Facts["scans_ahead"], c.Facts["scans_behind"], c.Facts["scans_on_time"] = d.ahead, d.behind, d.same
	sync := "cannot tell whether the gate's clock is synchronised (" + errText(f.kernelErr) + ")"
	if f.kernelErr == nil {
		c.Facts["kernel_synchronised"], c.Facts["kernel_max_error"] = f.kernel.Synced, f.kernel.MaxError.String()
		sync = "the gate's clock is synchronised (NTP)"
		if !f.kernel.Synced {
			sync = "the gate's clock is not synchronised (timedatectl: \"System clock synchronized: no\")"
		}
	}
	refused, nRefused := "", uint64(0)
	if f.refusalsKnown {
		c.Facts["code_stale_last_hour"], c.Facts["code_from_future_last_hour"] = f.refusals.Stale, f.refusals.Future
		nRefused = f.refusals.Stale + f.refusals.Future
		refused = fmt.Sprintf("%s refused as CODE_STALE and %d as CODE_FROM_FUTURE in the last hour (%s)", plural.N(f.refusals.Stale, "code", "codes"), f.refusals.Future, f.refusalsFrom)
	}
	applied := "no offset to the issuer learnt yet: codes are checked on the gate's own clock"
	switch {
	case f.offsetKnown && f.daemon:
		applied = "the offset learnt from the feed is applied: codes are checked on the issuer's clock"
	case f.offsetKnown:
		applied = "the agent applies this offset once it runs: codes are checked on the issuer's clock"
	case !f.daemon:
		applied = "the agent learns the offset to the issuer once it runs"
	}
	if f.raw.Before(f.trustedAfter) {
		c.Status = Fail
		now := "codes are refused as CLOCK_UNTRUSTED until the gate reaches the issuer"
		if f.offsetKnown && !f.raw.Add(f.offset).Before(f.trustedAfter) {
			now = "codes are checked on the issuer's clock for now, but after a restart without the network every code is refused as CLOCK_UNTRUSTED"
		}
		c.Line = fmt.Sprintf("gate clock reads %s, before this agent was built (%s): %s; set the time (timedatectl, NTP) and check the RTC battery",
			f.raw.UTC().Format(time.RFC3339), f.trustedAfter.UTC().Format("2006-01-02"), now)
		return c
	}
	off := "offset to the issuer unknown (see feed)"
	if f.offsetKnown {
		off = fmt.Sprintf("%s (%s)", describeOffset(f.offset), f.offsetFrom)
	}
	withRefused := func(s string) string {
		if refused != "" {
			s += "; " + refused
		}
		return s
	}
	if f.offsetKnown && (f.offset > ClockOffsetWarn || f.offset < -ClockOffsetWarn) {
		big := f.offset >= ClockOffsetFail || f.offset <= -ClockOffsetFail
		switch {
		case f.kernelErr == nil && f.kernel.Synced:
			// The gate keeps good time: the issuer does not, and the gate
			// follows it, so passengers' codes (made on their phones'
			// network time) fall outside the step window.
			c.Facts["blame"] = "issuer"
			c.Status = Warn
			if big || nRefused > 0 {
				c.Status = Fail
			}
			side := "ahead of"
			if f.offset < 0 {
				side = "behind"
			}
			c.Line = withRefused(fmt.Sprintf("the issuer's clock is wrong: it is %s %s the gate's, whose clock is synchronised (NTP); %s, so passengers' codes are refused as stale or from the future",
				abs(f.offset).Round(time.Second), side, applied)) +
				"; fix the issuer's clock (its NTP): the gates follow it within a feed round"
		case f.kernelErr == nil:
			c.Facts["blame"] = "gate"
			c.Status = Warn
			c.Line = withRefused(fmt.Sprintf("gate clock %s, and %s: %s, so codes pass for now", off, sync, applied)) +
				"; the gate's time sync is broken: check NTP (timedatectl timesync-status)"
		default:
			c.Status = Warn
			c.Line = withRefused(fmt.Sprintf("gate clock %s, and %s, so it cannot say which clock is wrong; %s", off, sync, applied)) +
				"; check NTP on the gate (timedatectl timesync-status) and the issuer's clock"
		}
		return c
	}
	if d.n >= DriftMinScans && (d.ahead*2 >= d.n || d.behind*2 >= d.n) {
		c.Status = Warn
		if f.kernelErr == nil && f.kernel.Synced {
			dir := "ahead (the phones are about a minute fast)"
			if d.behind*2 >= d.n {
				dir = "behind (the phones are about a minute slow)"
			}
			c.Line = withRefused(fmt.Sprintf("%d of the last %s read one step or more %s; %s and %s: nothing to fix at the gate", max(d.ahead, d.behind), plural.N(d.n, "code", "codes"), dir, sync, off))
			return c
		}
		if d.ahead*2 >= d.n {
			c.Line = fmt.Sprintf("%d of the last %s read one step or more ahead: the gate's clock is about a minute slow; %s; check NTP", d.ahead, plural.N(d.n, "code", "codes"), off)
		} else {
			c.Line = fmt.Sprintf("%d of the last %s read one step or more behind: the gate's clock is about a minute fast; %s; check NTP", d.behind, plural.N(d.n, "code", "codes"), off)
		}
		c.Line = withRefused(c.Line)
		return c
	}
	c.Status = Pass
	c.Line = fmt.Sprintf("gate clock %s, %s", f.raw.UTC().Format(time.RFC3339), off)
	if d.n > 0 {
		c.Line += fmt.Sprintf("; of %s (%s) %d on time, %d ahead, %d behind", plural.N(d.n, "code", "codes"), f.offsetsFrom, d.same, d.ahead, d.behind)
	}
	if nRefused > 0 {
		c.Line = withRefused(c.Line)
	}
	if f.kernelErr == nil && !f.kernel.Synced {
		if f.offsetKnown {
			c.Line += "; " + sync + ", but the offset learnt from the feed keeps codes checked on the issuer's clock"
		} else {
			c.Status = Warn
			c.Line += "; " + sync + " and no offset to the issuer is known, so codes are checked on a clock nobody sets: check NTP (timedatectl timesync-status) and see the feed check"
		}
	}
	return c
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func errText(err error) string {
	if err == nil {
		return "unknown"
	}
	return oneLine(err)
}

type drift struct{ n, ahead, behind, same int }

func learnDrift(offsets []int64) drift {
	var d drift
	for _, o := range offsets {
		d.n++
		switch {
		case o > 0:
			d.ahead++
		case o < 0:
			d.behind++
		default:
			d.same++
		}
	}
	return d
}

func describeOffset(off time.Duration) string {
	switch {
	case off > time.Second:
		return fmt.Sprintf("%s behind the issuer", off.Round(time.Second))
	case off < -time.Second:
		return fmt.Sprintf("%s ahead of the issuer", (-off).Round(time.Second))
	}
	return fmt.Sprintf("on time with the issuer (offset %s)", off.Round(time.Millisecond))
}

// cacheFacts is what the cache check looks at.
type cacheFacts struct {
	path      string
	openErr   error
	checkErr  error
	stats     *cache.Stats
	statsErr  error
	feed      cache.FeedState // read on its own: it answers beside a damaged certificate page
	checked   bool            // the integrity check ran
	checkAge  time.Duration   // how long ago (the agent reuses a recent result)
	now       time.Time
	freshAt   time.Time // last known caught up with the feed
	maxAge    time.Duration
	diskFree  uint64
	diskErr   error
	fileBytes int64
	// write: may the agent's user write the cache (standalone), or is its
	// file system read-only (daemon).
	write writable
	// record is the running gate's failed write of its event log, since
	// recordSince (nil: writes succeed).
	record      error
	recordSince time.Time
	// noKey: the cache key could not be loaded, so the file was not
	// opened (the keys check says why).
	noKey bool
}

func judgeCache(f cacheFacts) Check {
	c := Check{Name: NameCache, Facts: map[string]any{"file": f.path}}
	var ce *cache.CorruptError
	switch {
	case f.noKey:
		c.Status, c.Line = Skip, "not opened: the cache key could not be loaded (see the keys check)"
		return c
	case errors.Is(f.openErr, cache.ErrWrongKey):
		c.Status, c.Line = Fail, fmt.Sprintf("%s was made under another cache key: see the keys check", f.path)
		return c
	case errors.Is(f.openErr, cache.ErrPlaintext):
		c.Status, c.Line = Warn, fmt.Sprintf("%s was written by an older release (certificate keys in plaintext, records unauthenticated): the agent does not use it; at its next start it rebuilds the cache from the key feed and removes this file once the new one holds a full sync (codes are refused until then)", f.path)
		return c
	case errors.Is(f.openErr, cache.ErrLocked):
		c.Status, c.Line = Fail, fmt.Sprintf("%s is locked by another process, and no agent answers on the control socket: is gateagent hung? restart it (systemctl restart gateagent)", f.path)
		return c
	case errors.As(f.openErr, &ce), errors.As(f.checkErr, &ce), errors.As(f.statsErr, &ce):
		c.Status, c.Line = Fail, fmt.Sprintf("%s: %s", corruption(ce), corruptAdvice(ce, "rebuilds the certificates from the issuer (the gate refuses codes until then); the events are in the journal and are kept"))
		return c
	case f.write.checked && f.write.err != nil && !f.write.dirOnly:
		c.Status, c.Line = Fail, f.write.line(f.path)
		return c
	case f.openErr != nil:
		c.Status, c.Line = Fail, fmt.Sprintf("%v: the agent creates it at its first start; check the directory exists and belongs to the agent's user", oneLine(f.openErr))
		return c
	case f.checkErr != nil || f.statsErr != nil:
		c.Status, c.Line = Fail, fmt.Sprintf("cannot read %s: %v", f.path, oneLine(errors.Join(f.checkErr, f.statsErr)))
		return c
	}
	st := f.stats
	c.Facts["certificates"], c.Facts["file_bytes"] = st.Certs, f.fileBytes
	c.Facts["cursor"], c.Facts["epoch"] = f.feed.Cursor, f.feed.Epoch
	if !f.freshAt.IsZero() {
		c.Facts["last_sync"] = f.freshAt
	}
	c.Facts["max_age"] = f.maxAge.String()
	if f.diskErr == nil {
		c.Facts["disk_free_bytes"] = f.diskFree
	}
	if f.write.checked && f.write.user.Name != "" {
		c.Facts["writable_by"], c.Facts["write_check"] = f.write.user.Name, string(f.write.method)
		if f.write.note != "" {
			c.Facts["write_check_note"] = f.write.note
		}
	}
	integrity := "integrity ok"
	switch {
	case !f.checked:
		integrity = "integrity not checked"
	case f.checkAge >= time.Second:
		integrity = fmt.Sprintf("integrity ok (checked %s ago; diag --deep checks again)", f.checkAge.Round(time.Second))
	}
	summary := fmt.Sprintf("%s, %s, %s", plural.N(st.Certs, "certificate", "certificates"), mib(f.fileBytes), integrity)
	if f.diskErr == nil {
		summary += fmt.Sprintf(", %s free", mib(int64(f.diskFree)))
	}
	dir := filepath.Dir(f.path)
	switch {
	case f.record != nil:
		since := ""
		if !f.recordSince.IsZero() {
			since = " since " + ago(f.now, f.recordSince)
		}
		c.Status = Fail
		c.Line = fmt.Sprintf("the event log cannot be written%s (%s), so every grant is refused (%s): %s", since, oneLine(f.record), summary, storageAdvice(f.record, dir))
	case f.diskErr == nil && f.diskFree < MinDiskFree:
		c.Status = Fail
		c.Line = fmt.Sprintf("disk full: only %s free beside the cache (%s): the event log cannot grow, and grants stop when it must; %s", mib(int64(f.diskFree)), summary, storageAdvice(syscall.ENOSPC, dir))
	case f.freshAt.IsZero():
		c.Status, c.Line = Fail, fmt.Sprintf("never synced with the issuer (%s): the gate knows no valid certificate; see the feed check", summary)
	case f.maxAge > 0 && f.now.Sub(f.freshAt) > f.maxAge:
		c.Status = Fail
		c.Line = fmt.Sprintf("stale: last synced %s, the feed allows %s (%s): revocations since then are not known here; see the feed check and the network path to the issuer",
			ago(f.now, f.freshAt), f.maxAge, summary)
	case f.write.dirOnly:
		c.Status, c.Line = Warn, f.write.line(f.path)
	case f.feed.Resync != nil:
		c.Status, c.Line = Warn, fmt.Sprintf("a full sync is under way (%s): certificates it has not reached yet are refused as UNKNOWN_CERT until it ends", summary)
	case f.diskErr == nil && f.diskFree < DiskFreeWarn:
		c.Status, c.Line = Warn, fmt.Sprintf("only %s free beside the cache (%s): free space on %s before the cache or event log cannot grow", mib(int64(f.diskFree)), summary, filepath.Dir(f.path))
	default:
		c.Status, c.Line = Pass, fmt.Sprintf("%s, last synced %s (the feed allows %s)", summary, ago(f.now, f.freshAt), f.maxAge)
	}
	return c
}

// diskFree is the space left to the agent on the file system holding path.
func diskFree(path string) (uint64, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(path), &s); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", filepath.Dir(path), err)
	}
	return uint64(s.Bavail) * uint64(s.Bsize), nil
}

// feedFacts is what the feed check looks at.
type feedFacts struct {
	url         string
	probe       keysync.Probe
	err         error
	cursor      uint64 // the cache's position
	epoch       uint64
	cursorKnown bool
}

func judgeFeed(f feedFacts) Check {
	c := Check{Name: NameFeed, Facts: map[string]any{"url": f.url}}
	if f.err != nil {
		c.Status = Fail
		cause := oneLine(f.err)
		var op *net.OpError
		if errors.As(f.err, &op) {
			cause = op.Error() // without the URL and its nonce
		}
		c.Line = fmt.Sprintf("%s: %s: %s", f.url, cause, feedAdvice(f.err))
		return c
	}
	p := f.probe
	c.Facts["head"], c.Facts["key_id"], c.Facts["rtt"] = p.Head, p.KeyID, p.RTT.String()
	c.Status = Pass
	c.Line = fmt.Sprintf("issuer answers in %s, head signed by trusted key %s, head at %d", ms(p.RTT), p.KeyID, p.Head)
	if f.cursorKnown {
		switch {
		case f.epoch != 0 && f.epoch != p.Epoch:
			c.Status = Warn
			c.Line += "; the issuer's feed was replaced (new epoch): the gate resyncs from a snapshot at its next poll"
		case p.Head >= f.cursor:
			c.Facts["lag_records"] = p.Head - f.cursor
			c.Line += fmt.Sprintf(", cache at %d (%d behind)", f.cursor, p.Head-f.cursor)
		default:
			c.Status = Warn
			c.Line += fmt.Sprintf("; the cache is at %d, ahead of the issuer: the gate resyncs at its next poll", f.cursor)
		}
	}
	return c
}

// feedAdvice says what to do about a failed feed round trip, by the
// trouble keysync judges it to be (the agent's log judges it the same way).
func feedAdvice(err error) string {
	switch keysync.Diagnose(err) {
	case keysync.TroubleSignature:
		return "the head's signature does not verify with the trusted key of that ID: feed.trusted_keys holds a wrong key for it, or something between the gate and the issuer alters the feed; compare with `issuer pubkey`"
	case keysync.TroubleUnknownKey:
		return "add the issuer's new public key (issuer pubkey) to feed.trusted_keys"
	case keysync.TroubleMisdirected:
		return "the answer is a genuine feed document but not the one asked for: check the station proxy's cache rules (the head must never be cached)"
	case keysync.TroubleFormat:
		return "the answer is not a feed document: check feed.url points at the issuer's feed"
	case keysync.TroubleTLSTrust:
		return "TLS: the issuer's certificate is not signed by the station CA the gate trusts: check feed.ca_file"
	case keysync.TroubleTLSName:
		return "TLS: the issuer's certificate is for another name: check feed.url or feed.server_name"
	case keysync.TroubleNotTLS:
		return "TLS: the issuer does not speak TLS at that address: check http/https in feed.url"
	case keysync.TroubleTLSRefused:
		return "TLS: the issuer refused the handshake: check feed.cert_file/key_file (mutual TLS: the gate's certificate must be one the issuer accepts) and feed.ca_file"
	case keysync.TroubleRedirect:
		return "feed.url answers with a redirect to another host or scheme, which the gate does not follow (its event log goes to the configured issuer only): set feed.url to the address the redirect names, if it is the station's issuer or proxy"
	case keysync.TroubleNetwork:
		return "the issuer is unreachable from the gate: check the network cable, the station network and the proxy; the gate keeps checking codes on its cache until it goes stale"
	}
	return "check feed.url and the issuer's logs"
}

// judgeBacklog judges the events not yet uploaded, in the journal.
func judgeBacklog(b cache.Backlog, err error, now time.Time, uploadErr string) Check {
	c := Check{Name: NameBacklog}
	var ce *cache.CorruptError
	switch {
	case errors.Is(err, cache.ErrNoKey):
		c.Status, c.Line = Skip, "not opened: the cache key could not be loaded (see the keys check)"
		return c
	case errors.Is(err, cache.ErrWrongKey):
		c.Status, c.Line = Fail, "the journal was made under another cache key: see the keys check"
		return c
	case errors.As(err, &ce):
		c.Status, c.Line = Fail, fmt.Sprintf("the journal %s: %s", corruption(ce), corruptAdvice(ce, "uploads the events it can still read, and its log says how many were lost"))
		return c
	case errors.Is(err, fs.ErrNotExist):
		c.Status, c.Line = Warn, "no journal (the event log) yet: the agent creates it beside the cache at its next start"
		return c
	case err != nil:
		c.Status, c.Line = Fail, fmt.Sprintf("cannot read the event log: %v", oneLine(err))
		return c
	}
	c.Facts = map[string]any{"events": b.Events, "last_seq": b.LastSeq}
	if b.Events == 0 {
		c.Status, c.Line = Pass, fmt.Sprintf("every event is uploaded (the last was number %d)", b.LastSeq)
		return c
	}
	c.Facts["oldest"] = b.Oldest
	if now.Sub(b.Oldest) > BacklogWarnAge {
		c.Status = Warn
		c.Line = fmt.Sprintf("%s not uploaded, the oldest from %s: the issuer is not taking them", plural.N(b.Events, "event", "events"), ago(now, b.Oldest))
		if uploadErr != "" {
			c.Line += " (" + uploadErr + ")"
		}
		c.Line += "; see the feed check. Nothing is lost: they stay in the journal until acknowledged"
		return c
	}
	c.Status, c.Line = Pass, fmt.Sprintf("%s waiting for the next upload, the oldest from %s", plural.N(b.Events, "event", "events"), ago(now, b.Oldest))
	return c
}

// authenticOffsets picks the step offsets of authentic decisions out of
// the event log (the daemon stopped: its learnt figures are gone).
func authenticOffsets(events []event.Event) []int64 {
	var out []int64
	for _, e := range events {
		d := verify.Decision{Reason: e.Reason}
		if e.Kind == event.Decision && d.Authentic() {
			out = append(out, e.StepOffset)
		}
	}
	return out
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return fmt.Sprintf("%s in the future (the clock was set back?)", (-d).Round(time.Second))
	case d < time.Second:
		return "just now"
	case d < 48*time.Hour:
		return d.Round(time.Second).String() + " ago"
	}
	return plural.N(int(d.Hours()/24), "day", "days") + " ago"
}

func mib(n int64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// oneLine flattens an error (errors.Join puts newlines between parts).
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// corruption says what is wrong with a file, from what the check found.
func corruption(ce *cache.CorruptError) string {
	s := fmt.Sprintf("%s is %s", ce.Path, ce.Kind)
	if ce.Detail != "" && ce.Kind != cache.Empty {
		d := ce.Detail
		if len(d) > 160 {
			d = d[:160] + "…"
		}
		s += " (" + d
		if ce.Problems > 1 {
			s += ", and " + plural.N(ce.Problems-1, "more problem", "more problems")
		}
		s += ")"
	}
	return s
}

// corruptAdvice says what to do about a file that is not whole; rebuild
// says what the agent does with it beyond moving it aside.
func corruptAdvice(ce *cache.CorruptError, rebuild string) string {
	if ce.Kind == cache.Empty {
		return "an agent stopped in its first moments leaves one; the agent sets it up at its next start, nothing to do"
	}
	return fmt.Sprintf("(re)start gateagent (systemctl restart gateagent): it moves the file aside as %s.damaged-TIME (keep it for the station) and %s", filepath.Base(ce.Path), rebuild)
}
