package diag

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/hw"
	"gateagent/hw/gpiohw"
	"gateagent/internal/version"
	"gateagent/keysync"
	"gateagent/scanner"
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
	return e
}

// Standalone runs every check itself, for a gate whose daemon is stopped:
// it opens the board (driving every output off, as the agent does at
// start), opens the scanner's port once, asks the issuer for its head, and
// reads the cache file without writing to it.
func Standalone(ctx context.Context, path string, env Env) *Report {
	env = env.withDefaults()
	r := &Report{Version: version.String(), At: env.Now(), Mode: "standalone"}
	cfg, err := config.Load(path)
	r.Add(judgeConfig(path, cfg, err))
	if err != nil {
		for _, n := range []string{NameHardware, NameScanner, NameClock, NameCache, NameFeed, NameBacklog} {
			r.Add(Check{Name: n, Status: Skip, Line: "not checked: the config does not load"})
		}
		return r
	}
	r.Gate = cfg.Gate.ID
	release, err := standalone(cfg)
	if err != nil {
		r.Add(Check{Name: NameAgent, Status: Fail, Line: oneLine(err)})
		for _, n := range []string{NameHardware, NameScanner, NameClock, NameCache, NameFeed, NameBacklog} {
			r.Add(Check{Name: n, Status: Skip, Line: "not checked: an agent holds the gate"})
		}
		return r
	}
	defer release()

	b, err := env.OpenBoard(cfg)
	r.Add(judgeHardware(cfg.HW.Kind, b, err, ""))
	if b != nil {
		b.Close()
	}
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
		events    []cache.Event
		backlog   cache.Backlog
		feedState cache.FeedState
		feedErr   error
	)
	backlogErr := errors.New("the cache file cannot be opened")
	c, err := cache.Open(cfg.Gate.Cache, &cache.Options{ReadOnly: true, LockTimeout: time.Second})
	cf.openErr = err
	if err == nil {
		defer c.Close()
		cf.checkErr, cf.checked = c.Check(), true
		st, err := c.Stats()
		cf.stats, cf.statsErr, cf.fileBytes = &st, err, st.FileSize
		feedState, feedErr = c.Feed()
		cf.feed, cf.freshAt, cf.maxAge = feedState, feedState.SyncedAt, feedState.MaxAge
		if cf.statsErr == nil {
			cf.statsErr = feedErr
		}
		backlog, backlogErr = c.Backlog()
		// The newest decisions, as many as the running agent keeps.
		events, _ = c.Events(max(backlog.LastSeq, driftScans)-driftScans, driftScans)
	}
	cf.diskFree, cf.diskErr = diskFree(cfg.Gate.Cache)

	cl := clockFacts{raw: raw, trustedAfter: env.TrustedAfter, offset: probe.Offset, offsetKnown: probeErr == nil && probe.OffsetOK,
		offsetFrom: "asked the issuer now", offsets: authenticOffsets(events), offsetsFrom: "the newest in the event log not yet uploaded"}
	r.Add(judgeClock(cl))
	r.Add(judgeCache(cf))
	ff := feedFacts{url: cfg.Feed.URL, probe: probe, err: probeErr}
	if cf.openErr == nil && feedErr == nil {
		ff.cursor, ff.epoch, ff.cursorKnown = feedState.Cursor, feedState.Epoch, true
	}
	r.Add(judgeFeed(ff))
	r.Add(judgeBacklog(backlog, backlogErr, now, ""))
	r.Add(Check{Name: NameLatency, Status: Skip, Line: "no figures: the agent keeps them in memory while it runs, and it is not running"})
	r.Add(standalonePeers(cfg))
	return r
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
	return keysync.ProbeHead(ctx, keysync.Config{URL: cfg.Feed.URL, Keys: keys, HTTP: httpc, Now: env.Now})
}
