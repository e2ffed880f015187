package diag

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/event"
	"gateagent/health"
	"gateagent/hw"
	"gateagent/hw/gpiohw"
	"gateagent/internal/kclock"
	"gateagent/internal/version"
	"gateagent/keysync"
	"gateagent/metrics"
	"gateagent/scanner"
	"gateagent/verify"
	"gateagent/wear"
)

// Env is how diag reaches the gate's world when it works on its own (the
// daemon stopped). The zero Env is the real board and clock.
type Env struct {
	// Now is the gate's raw clock; default time.Now.
	Now func() time.Time
	// OpenBoard opens the gate's board from the config; default the
	// board's GPIO pins (hw.OpenHost) or, with hw.kind = "sim", the
	// simulated board. Tests pass fake pins.
	OpenBoard func(*config.Config) (*hw.Board, error)
	// TrustedAfter is the earliest believable time; default the agent's
	// build date.
	TrustedAfter time.Time
	// FeedTimeout bounds the round trip to the issuer; default 10 s.
	FeedTimeout time.Duration
	// ClockState says whether the kernel clock is synchronised; default
	// kclock.Read (adjtimex).
	ClockState kclock.Reader
	// AgentUser is the user the agent runs as, whose access to the cache
	// diag checks; default AgentUser (configs/gateagent.service's User=).
	AgentUser string
}

func (e Env) withDefaults() Env {
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.OpenBoard == nil {
		e.OpenBoard = func(cfg *config.Config) (*hw.Board, error) {
			if cfg.HW.Kind == "sim" {
				return hw.NewSim(nil, nil).Board(), nil
			}
			return gpiohw.OpenHost(cfg.Pins())
		}
	}
	if e.TrustedAfter.IsZero() {
		e.TrustedAfter = version.BuildTime()
	}
	if e.FeedTimeout <= 0 {
		e.FeedTimeout = 10 * time.Second
	}
	if e.ClockState == nil {
		e.ClockState = kclock.Read
	}
	if e.AgentUser == "" {
		e.AgentUser = AgentUser
	}
	return e
}

// standaloneReport runs every check itself, for a gate whose daemon is
// stopped: it opens the board (driving every output off, as the agent does
// at start), opens the scanner's port once, asks the issuer for its head,
// and reads the cache file without writing to it. cfg and err are the
// config file at path, loaded.
func standaloneReport(ctx context.Context, path string, cfg *config.Config, err error, env Env) *Report {
	r := &Report{Version: version.String(), At: env.Now(), Mode: "standalone"}
	r.Add(judgeConfig(path, cfg, err))
	if err != nil {
		for _, n := range []string{NameService, NameHardware, NameScanner, NameClock, NameKeys, NameCache, NameRecords, NameFeed, NameBacklog, NameWear} {
			r.Add(Check{Name: n, Status: Skip, Line: "not checked: the config does not load"})
		}
		return r
	}
	r.Gate = cfg.Gate.ID
	release, err := claim(cfg)
	if err != nil {
		r.Add(Check{Name: NameAgent, Status: Fail, Line: oneLine(err)})
		for _, n := range []string{NameService, NameHardware, NameScanner, NameClock, NameKeys, NameCache, NameRecords, NameFeed, NameBacklog, NameWear} {
			r.Add(Check{Name: n, Status: Skip, Line: "not checked: an agent holds the gate"})
		}
		return r
	}
	defer release()

	b, err := env.OpenBoard(cfg)
	r.Add(judgeHardware(cfg.HW.Kind, b, err, ""))
	var inputs inputLevels
	if b != nil {
		inputs = readInputs(b)
		b.Close()
	}
	boardFault := standaloneFault(err, inputs)
	r.Add(judgeScannerPort(cfg, probeScanner(cfg)))

	raw := env.Now()
	probe, probeErr := probeFeed(ctx, cfg, env)
	now := raw
	if probeErr == nil && probe.OffsetOK {
		now = raw.Add(probe.Offset)
	}

	// The sync time is stamped on the gate's raw clock, as the agent
	// judges staleness.
	cf := cacheFacts{path: cfg.Gate.Cache, now: raw}
	var (
		events    []event.Event
		backlog   cache.Backlog
		feedState cache.FeedState
		feedErr   error
		logRead   bool
	)
	cf.write = checkWritable(cfg.Gate.Cache, env.AgentUser)
	// The keys first: the files open only under the cache key.
	keys, keysErr := cfg.LoadKeys()
	kf := keysFacts{keys: keys, err: keysErr, cachePath: cfg.Gate.Cache}
	rf := recordsFacts{cachePath: cfg.Gate.Cache, jnlPath: cache.JournalPath(cfg.Gate.Cache)}
	var c *cache.Cache
	var j *cache.Journal
	backlogErr := error(cache.ErrNoKey)
	if keysErr != nil {
		cf.noKey, cf.openErr = true, keysErr
	} else {
		ro := &cache.Options{ReadOnly: true, LockTimeout: time.Second, Key: keys.Cache}
		c, cf.openErr = cache.Open(cfg.Gate.Cache, ro)
		// The event log is in the journal beside the cache.
		j, backlogErr = cache.OpenJournal(cache.JournalPath(cfg.Gate.Cache), ro)
		kf.wrongKey = wrongKeyOf(cf.openErr, backlogErr)
		kf.legacy = legacyOf(cfg.Gate.Cache, cf.openErr)
	}
	if c != nil {
		defer c.Close()
		cf.checkErr, cf.checked = c.Check(), true
		st, err := c.Stats()
		cf.stats, cf.statsErr, cf.fileBytes = &st, err, st.FileSize
		feedState, feedErr = c.Feed()
		cf.feed, cf.freshAt, cf.maxAge = feedState, feedState.SyncedAt, feedState.MaxAge
		if cf.statsErr == nil {
			cf.statsErr = feedErr
		}
		rf.cache, rf.cacheErr = c.Authenticate()
		rf.cacheRun = true
	}
	wf := wearFacts{r: wear.NewReport(cfg.Device(), nil, nil), now: now, closed: c == nil}
	if c != nil {
		wf.r.Files, wf.r.FilesErr = measureFiles(c, cache.JournalPath(cfg.Gate.Cache), now)
	}
	if j != nil {
		defer j.Close()
		if backlogErr = j.Check(); backlogErr == nil {
			backlog, backlogErr = j.Backlog()
			events, logRead = newestEvents(j, backlog)
			rf.journal, rf.jnlErr = j.Authenticate()
			rf.jnlRun = true
		}
	}
	cf.diskFree, cf.diskErr = diskFree(cfg.Gate.Cache)

	r.Add(judgeClock(standaloneClock(raw, now, probe, probeErr, events, logRead, env)))
	r.Add(judgeKeys(kf))
	r.Add(judgeCache(cf))
	r.Add(judgeRecords(rf))
	ff := feedFacts{url: cfg.Feed.URL, probe: probe, err: probeErr}
	if cf.openErr == nil && feedErr == nil {
		ff.cursor, ff.epoch, ff.cursorKnown = feedState.Cursor, feedState.Epoch, true
	}
	r.Add(judgeFeed(ff))
	r.Add(judgeBacklog(backlog, backlogErr, now, ""))
	r.Add(judgeWear(wf))
	r.Add(Check{Name: NameLatency, Status: Skip, Line: "no figures: the agent keeps them in memory while it runs, and it is not running"})

	// What the agent would find if it started now: the same verdict the
	// running agent serves on /healthz, from what diag found.
	parts := health.Parts{Gate: boardFault, Now: now, TrustedAfter: env.TrustedAfter}
	if cf.write.fatal() {
		parts.Cache = cf.write.err
	}
	switch {
	case cf.openErr == nil && feedErr == nil:
		parts.Feed = feedStatusOf(feedState, raw, cfg.Feed.RefuseWhenStale)
	case errors.Is(cf.openErr, fs.ErrNotExist), errors.Is(cf.openErr, cache.ErrPlaintext):
		parts.Feed = &keysync.Status{} // no cache yet, or one to rebuild: never synced
	}
	service := judgeService(health.Judge(parts), false, cfg.Gate.Cache, &cf.write)
	if kf.err != nil || kf.wrongKey != nil {
		// Without its keys, or under the wrong one, the agent would
		// not start at all.
		service = Check{Name: NameService, Status: Fail, Facts: map[string]any{"can_grant": false},
			Line: "the agent would not start: its keys do not load or do not open the gate's files; see the keys check"}
	}
	r.Checks = slices.Insert(r.Checks, 1, service)
	r.Add(standalonePeers(cfg))
	return r
}

// standaloneWearCheck is the wear check with the agent stopped: the
// cache's files against their live certificates, on the gate's own clock;
// the rate needs the running agent.
func standaloneWearCheck(cfg *config.Config, env Env) Check {
	wf := wearFacts{r: wear.NewReport(cfg.Device(), nil, nil), now: env.Now(), closed: true}
	keys, err := cfg.LoadKeys()
	if err == nil {
		var c *cache.Cache
		c, err = cache.Open(cfg.Gate.Cache, &cache.Options{ReadOnly: true, LockTimeout: time.Second, Key: keys.Cache})
		if err == nil {
			defer c.Close()
			wf.closed = false
			wf.r.Files, wf.r.FilesErr = measureFiles(c, cache.JournalPath(cfg.Gate.Cache), wf.now)
		}
	}
	ch := judgeWear(wf)
	if err != nil {
		ch.Line = fmt.Sprintf("the files were not measured: %v; see gateagent diag (the keys and cache checks)", oneLine(err))
	}
	return ch
}

// feedStatusOf is what the agent would start from: the feed's state as
// the cache file holds it, judged on the gate's raw clock as keysync
// judges staleness.
func feedStatusOf(fs cache.FeedState, raw time.Time, refuse bool) *keysync.Status {
	st := &keysync.Status{FreshAt: fs.SyncedAt, MaxAge: fs.MaxAge, Head: fs.Cursor}
	st.Stale = fs.SyncedAt.IsZero() || fs.MaxAge <= 0 || raw.Sub(fs.SyncedAt) > fs.MaxAge
	st.Refusing = st.Stale && refuse
	return st
}

// clockEvents is how many of the newest events standalone diag reads for
// the clock: the last hour's refusals of a busy gate, and the newest
// driftScans for the drift.
const clockEvents = 4096

// newestEvents reads the newest events of the log not yet uploaded; false
// when it cannot be read.
func newestEvents(j *cache.Journal, b cache.Backlog) ([]event.Event, bool) {
	ev, err := j.Events(max(b.LastSeq, clockEvents)-clockEvents, clockEvents)
	return ev, err == nil
}

// standaloneClock gathers the clock check's facts with the agent stopped:
// the offset asked of the issuer now, the step offsets and the clock
// refusals of the event log (what is not yet uploaded), the kernel
// clock's state.
func standaloneClock(raw, now time.Time, probe keysync.Probe, probeErr error, events []event.Event, logRead bool, env Env) clockFacts {
	drift := events[max(0, len(events)-driftScans):]
	f := clockFacts{raw: raw, trustedAfter: env.TrustedAfter, offset: probe.Offset, offsetKnown: probeErr == nil && probe.OffsetOK,
		offsetFrom: "asked the issuer now", offsets: authenticOffsets(drift), offsetsFrom: "the newest in the event log not yet uploaded",
		refusals: clockRefusals(events, now), refusalsKnown: logRead, refusalsFrom: "from the event log not yet uploaded"}
	f.kernel, f.kernelErr = env.ClockState()
	return f
}

// clockRefusals counts the decisions of the last hour refused for the
// clock. Events are stamped on the agent's corrected clock; now is the
// gate's clock corrected by the issuer's offset, when known.
func clockRefusals(events []event.Event, now time.Time) metrics.ClockRefusals {
	var c metrics.ClockRefusals
	for _, e := range events {
		if e.Kind != event.Decision || now.Sub(e.Time) > time.Hour || e.Time.After(now.Add(time.Minute)) {
			continue
		}
		switch e.Reason {
		case verify.CodeStale:
			c.Stale++
		case verify.CodeFromFuture:
			c.Future++
		}
	}
	return c
}

// standaloneClockCheck is the clock check alone with the agent stopped,
// without the board or the scanner.
func standaloneClockCheck(ctx context.Context, cfg *config.Config, env Env) Check {
	raw := env.Now()
	probe, probeErr := probeFeed(ctx, cfg, env)
	now := raw
	if probeErr == nil && probe.OffsetOK {
		now = raw.Add(probe.Offset)
	}
	var events []event.Event
	var logRead bool
	if keys, err := cfg.LoadKeys(); err == nil {
		if j, err := cache.OpenJournal(cache.JournalPath(cfg.Gate.Cache), &cache.Options{ReadOnly: true, LockTimeout: time.Second, Key: keys.Cache}); err == nil {
			if b, err := j.Backlog(); err == nil {
				events, logRead = newestEvents(j, b)
			}
			j.Close()
		}
	}
	return judgeClock(standaloneClock(raw, now, probe, probeErr, events, logRead, env))
}

// probeScanner opens the scanner's port once (or looks at the camera's
// directory).
func probeScanner(cfg *config.Config) error {
	if cfg.Scanner.Kind == "images" {
		fi, err := os.Stat(cfg.Scanner.ImageDir)
		if err == nil && !fi.IsDir() {
			err = fmt.Errorf("not a directory")
		}
		return err
	}
	sc, err := cfg.SerialConfig()
	if err != nil {
		return err
	}
	return scanner.Probe(sc)
}

// probeFeed asks the issuer for its head once, as the agent would.
func probeFeed(ctx context.Context, cfg *config.Config, env Env) (keysync.Probe, error) {
	keys, err := cfg.Keyring()
	if err != nil {
		return keysync.Probe{}, err
	}
	httpc, err := keysync.NewHTTPClient(cfg.TLSOptions())
	if err != nil {
		return keysync.Probe{}, err
	}
	httpc.Timeout = env.FeedTimeout
	ctx, cancel := context.WithTimeout(ctx, env.FeedTimeout)
	defer cancel()
	return keysync.ProbeHead(ctx, keysync.Config{URL: cfg.Feed.URL, Keys: keys, HTTP: httpc, Now: env.Now}) // a head holds no certificate key
}
