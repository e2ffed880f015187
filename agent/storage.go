package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/internal/plural"
)

// openStorage is the start-up step "check, quarantine, rebuild": it opens
// the journal and the certificate cache, each checked as it opens
// (cache.Open, cache.OpenJournal; the cache's certificates are checked
// after, beside the running gate: watchCheck). A file that is not whole is moved aside
// for the technician (cache.Quarantine), an error is logged and an alarm
// event recorded, and the file is replaced:
//
//   - the journal by a new one holding every event and passage that could
//     be read from the old, the rest counted as lost (in the log and in
//     the alarm);
//   - the cache by an empty one that the key feed fills. The gate refuses
//     every code until the first full sync ends (cache.ErrNotSynced): a
//     rebuilding gate stays shut. A cache of schema 1 also held events:
//     they are salvaged into the journal the same way.
//
// A cache written before keys were sealed (schema 1 or 2: keys in
// plaintext, records unauthenticated) is neither trusted nor re-encrypted:
// its events, if it holds any (schema 1), move into the journal, and a new
// cache is filled from the key feed beside it (cache.RebuildPath), which
// replaces it, removing the old file, once it holds a full sync. Until
// then the gate refuses every code, as for a rebuilt cache. A journal.db
// of an older release is moved into the journal's log by
// cache.OpenJournal.
//
// A file made under another cache key (ErrWrongKey) stops the agent: a
// wrong credential must not cost the journal's events. Any other failure
// stops the agent too.
func openStorage(path string, opts *cache.Options, now func() time.Time, log *slog.Logger) (*cache.Store, error) {
	c, j, err := openFiles(path, opts, now, log)
	if err != nil {
		return nil, err
	}
	return &cache.Store{Cache: c, Journal: j}, nil
}

func openFiles(path string, opts *cache.Options, now func() time.Time, log *slog.Logger) (c *cache.Cache, j *cache.Journal, err error) {
	var alarms []string
	jpath := cache.JournalPath(path)
	j, err = cache.OpenJournal(jpath, opts)
	var ce *cache.CorruptError
	if errors.As(err, &ce) {
		// The journal's log, or a journal.db of an older release that
		// its migration found damaged.
		damagedPath := jpath
		if ce.Path == cache.LegacyJournalPath(jpath) {
			damagedPath = ce.Path
		}
		moved, res, err := replace(damagedPath, jpath, nil, opts, now)
		if err != nil {
			return nil, nil, err
		}
		j = res.journal
		if res.err != nil {
			log.Error("the journal is damaged: moved aside, and its events could not be read: they stay in the damaged file for the station",
				"damage", ce.Error(), "moved_to", moved, "err", res.err)
			alarms = append(alarms, fmt.Sprintf("journal %s: moved to %s; its events could not be read", ce.Kind, filepath.Base(moved)))
		} else {
			log.Error("the journal is damaged: moved aside; a new journal holds the events that could be read, and they will be uploaded",
				"damage", ce.Error(), "moved_to", moved, "events_salvaged", res.Events, "events_lost", lostText(res.Salvaged))
			alarms = append(alarms, fmt.Sprintf("journal %s: moved to %s; %s salvaged, lost: %s",
				ce.Kind, filepath.Base(moved), plural.N(res.Events, "event", "events"), lostText(res.Salvaged)))
		}
	} else if err != nil {
		return nil, nil, err
	}
	// The journal is closed again if the cache cannot be opened. Returns
	// set the named results (j to nil) before deferred calls run: close
	// the journal that was opened, not the result.
	opened := j
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()
	c, err = cache.Open(path, opts)
	if errors.Is(err, cache.ErrPlaintext) {
		var a string
		if c, a, err = rebuildLegacy(path, j, opts, log); err != nil {
			return nil, nil, err
		}
		alarms = append(alarms, a)
	} else if errors.As(err, &ce) {
		moved, res, err := replace(path, path, j, opts, now)
		if err != nil {
			return nil, nil, err
		}
		if c, err = cache.Open(path, opts); err != nil {
			return nil, nil, err
		}
		log.Error("the key cache is damaged: moved aside; rebuilding it from the key feed, and until then the gate refuses every code",
			"damage", ce.Error(), "moved_to", moved)
		a := fmt.Sprintf("key cache %s: moved to %s; rebuilding from the key feed, gate shut until then", ce.Kind, filepath.Base(moved))
		if res.err != nil {
			log.Error("could not read the damaged key cache for events (a cache of schema 1 held them)", "moved_to", moved, "err", res.err)
		} else if res.Events > 0 || res.Lost > 0 { // a cache of schema 1, which held events
			log.Error("events salvaged from the damaged key cache", "events_salvaged", res.Events, "events_lost", lostText(res.Salvaged))
			a += fmt.Sprintf("; %s salvaged, lost: %s", plural.N(res.Events, "event", "events"), lostText(res.Salvaged))
		}
		alarms = append(alarms, a)
	} else if err != nil {
		return nil, nil, err
	} else if rerr := os.Remove(cache.RebuildPath(path)); rerr == nil {
		// A rebuild left behind (its old cache was removed by hand).
		log.Info("removed an unfinished rebuild of the key cache", "file", cache.RebuildPath(path))
	}
	for _, a := range alarms {
		recordAlarm(j, now(), a, log)
	}
	return c, j, nil
}

// recordAlarm records an alarm event in j, or logs that it could not.
func recordAlarm(j *cache.Journal, at time.Time, detail string, log *slog.Logger) {
	if _, err := j.AppendEvent(event.Event{Time: at, Kind: event.Alarm, Detail: detail}); err != nil {
		log.Error("could not record the alarm", "alarm", detail, "err", err)
	}
}

// watchCheck waits for the check of the key cache's certificates that
// cache.Open leaves running after the start (so that a gate holding
// millions of them is ready at once: cache/deferred.go). Damage it finds
// is handled as damage found at the start, in two steps: now, the file is
// moved aside and an alarm recorded; then the agent stops with the error
// returned, and starts again (systemd's Restart=always) on a new cache
// that the key feed fills. Until it stops, the cache refuses every lookup
// and every write: the gate is shut. It returns nil for a whole cache, and
// for one closed before its check ended.
func (a *Agent) watchCheck() error {
	c := a.store.Cache
	start := time.Now()
	err := c.Checked()
	var ce *cache.CorruptError
	if !errors.As(err, &ce) {
		if err == nil {
			a.log.Info("key cache checked: every page whole", "took", time.Since(start).Round(time.Millisecond))
		}
		return nil
	}
	path := c.Path()
	moved, err := cache.Quarantine(path, a.opts.Now())
	if err != nil {
		a.log.Error("the key cache is damaged, and could not be moved aside: every code is refused; the agent stops, and will find the damage again at each start until the file is moved away by hand",
			"damage", ce.Error(), "err", err)
		return fmt.Errorf("the key cache is damaged (%v) and could not be moved aside: %w", ce, err)
	}
	a.log.Error("the key cache is damaged (found by the check of its certificates after the start): moved aside; the agent stops, and started again (systemd restarts it) it rebuilds the cache from the key feed; every code is refused until then",
		"damage", ce.Error(), "moved_to", moved)
	recordAlarm(a.store.Journal, a.opts.Now(), fmt.Sprintf("key cache %s: moved to %s; the agent restarts to rebuild it from the key feed, gate shut until then", ce.Kind, filepath.Base(moved)), a.log)
	return fmt.Errorf("the key cache is damaged: moved to %s; start the agent again to rebuild it from the key feed: %w", moved, ce)
}

// replaced is what replace did with a damaged file.
type replaced struct {
	cache.Salvaged
	journal *cache.Journal // the new journal, when the damaged file was one
	// err is why the salvage failed; the damaged file keeps its events
	// for the technician, and the gate runs on.
	err error
}

// replace moves the damaged file (or journal directory) at path aside and
// salvages its events into j, or, when j is nil (path is the journal, or
// a journal.db being migrated), into a new journal at jpath. Only a file
// that cannot be moved or replaced stops the agent.
func replace(path, jpath string, j *cache.Journal, opts *cache.Options, now func() time.Time) (string, replaced, error) {
	var res replaced
	moved, err := cache.Quarantine(path, now())
	if err != nil {
		return "", res, err
	}
	if j == nil {
		if j, err = cache.OpenJournal(jpath, opts); err != nil {
			return "", res, err
		}
		res.journal = j
	}
	res.Salvaged, res.err = j.Salvage(moved, now())
	return moved, res, nil
}

// lostText says how many events were lost, as exactly as is known.
func lostText(s cache.Salvaged) string {
	switch {
	case s.LostExact:
		return fmt.Sprint(s.Lost)
	case s.Lost > 0:
		return fmt.Sprintf("at least %d", s.Lost)
	}
	return "unknown"
}

// rebuildLegacy handles a cache of schema 1 or 2 at path: its events (a
// schema 1 cache held them) move into j, and the cache to use is the new
// file beside it that the key feed fills and that replaces it when full.
// It returns that cache and the alarm to record.
func rebuildLegacy(path string, j *cache.Journal, opts *cache.Options, log *slog.Logger) (*cache.Cache, string, error) {
	schema, err := cache.LegacySchema(path)
	if err != nil {
		return nil, "", err
	}
	mv, err := cache.MoveLegacyJournal(path, j)
	if err != nil {
		return nil, "", err
	}
	if mv.Events+mv.Passbacks > 0 {
		log.Info("events and passages moved from the old key cache into the journal, each given its MAC", "events", mv.Events, "passages", mv.Passbacks, "journal", j.Path())
	}
	o := *opts
	o.Replaces = path
	rebuild := cache.RebuildPath(path)
	c, err := cache.Open(rebuild, &o)
	var ce *cache.CorruptError
	if errors.As(err, &ce) {
		// Only this agent writes the rebuild, and the feed refills it.
		log.Warn("the unfinished rebuild of the key cache is damaged: starting it again", "file", rebuild, "damage", ce.Error())
		if err := os.Remove(rebuild); err != nil {
			return nil, "", err
		}
		c, err = cache.Open(rebuild, &o)
	}
	if err != nil {
		return nil, "", err
	}
	log.Warn("the key cache was written by an older release: its certificate keys are in plaintext and its records unauthenticated, so it is not used; "+
		"rebuilding it from the key feed into a new file, which replaces it (removing the old one) once it holds a full sync; every code is refused until then",
		"schema", schema, "old", path, "new", rebuild)
	return c, fmt.Sprintf("key cache of schema %d (keys in plaintext) not used: rebuilding it from the key feed, gate shut until then", schema), nil
}
