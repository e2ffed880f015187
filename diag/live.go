package diag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/control"
	"gateagent/gate"
	"gateagent/health"
	"gateagent/hw"
	"gateagent/internal/kclock"
	"gateagent/internal/version"
	"gateagent/keysync"
	"gateagent/metrics"
	"gateagent/scanner"
	"gateagent/station"
	"gateagent/verify"
	"gateagent/wear"
)

// Live is a running agent's parts, as its control socket shows them to
// diag. Every field but Scanner and ClockState is required.
type Live struct {
	Config   *config.Config
	Board    *hw.Board
	Cache    *cache.Cache
	Journal  *cache.Journal
	Feed     *keysync.Client
	Gate     *gate.Controller
	Verifier *verify.Verifier // the agent's own: its store, policy and corrected clock
	Metrics  *metrics.Metrics
	// Scanner reports the serial scanner's counters (false: images).
	Scanner func() (scanner.Stats, bool)
	// Ready is the agent's verdict: can the gate grant (what /healthz
	// serves).
	Ready func() health.Readiness
	// ClockState says whether the kernel clock is synchronised; default
	// kclock.Read.
	ClockState kclock.Reader
	// Station is the station peer node; nil without a [station] group.
	Station *station.Node
	// Keys are the agent's keys and where they came from.
	Keys *config.LoadedKeys
	// Damaged lists the records that failed authentication, healing or
	// healed within the hour; nil: none known.
	Damaged func() []DamagedRecord
	// Wear is what the agent reports of its flash's wear, the files
	// measured now; nil: the wear check is left out.
	Wear func() wear.Report
	// Now is the gate's raw clock.
	Now          func() time.Time
	TrustedAfter time.Time
	Logger       *slog.Logger

	// The files' integrity checks hold their write locks (a grant waits):
	// one runs at a time, and a result younger than CheckEvery is reused
	// unless a deep report asks for a new one.
	checkMu    sync.Mutex
	checkAt    time.Time
	checkErr   error // the cache's
	journalErr error // the journal's
	// The authentication pass over both files' records, with the check.
	cacheAuth, journalAuth       cache.AuthReport
	cacheAuthErr, journalAuthErr error
}

// CheckEvery is how long the agent reuses the result of the cache's
// integrity check for diag reports.
const CheckEvery = 10 * time.Minute

// integrity returns the age of the last integrity check of the cache and
// the journal, and their results.
func (l *Live) integrity(deep bool) (time.Duration, error, error) {
	l.checkMu.Lock()
	defer l.checkMu.Unlock()
	if deep || l.checkAt.IsZero() || time.Since(l.checkAt) > CheckEvery {
		l.checkErr, l.journalErr, l.checkAt = l.Cache.Check(), l.Journal.Check(), time.Now()
		// In read transactions: no writer waits for these.
		l.cacheAuth, l.cacheAuthErr = l.Cache.Authenticate()
		l.journalAuth, l.journalAuthErr = l.Journal.Authenticate()
	}
	return time.Since(l.checkAt), l.checkErr, l.journalErr
}

// Report runs every check on the running agent's own state. The
// integrity check of the cache and the journal holds each file's write
// lock while it runs (a grant waits for it): about 40 to 60 ms per million
// certificates on a 2-core amd64 VM (BenchmarkCheck1M), a few times that
// on an ARM board; so its result is reused for CheckEvery unless deep is
// set.
func (l *Live) Report(ctx context.Context, deep bool) *Report {
	cfg := l.Config
	r := &Report{Gate: cfg.Gate.ID, Version: version.String(), At: l.Now(), Mode: "daemon"}
	r.Add(judgeConfig("the running agent's config", cfg, nil))
	var ready health.Readiness
	if l.Ready != nil {
		ready = l.Ready()
		r.Add(judgeService(ready, true, l.Cache.Path(), nil))
	}
	r.Add(judgeHardware(cfg.HW.Kind, l.Board, nil, l.Gate.Status().State))
	st, serial := scanner.Stats{}, false
	if l.Scanner != nil {
		st, serial = l.Scanner()
	}
	raw := l.Now()
	fst := l.Feed.Status()
	now := raw.Add(fst.Offset)
	r.Add(judgeScannerLive(cfg, st, serial, now))

	r.Add(judgeClock(l.clockFacts(raw, fst)))
	if l.Keys != nil {
		r.Add(judgeKeys(keysFacts{keys: l.Keys, rebuilding: l.Cache.Rebuilding(), cachePath: l.Cache.Path()}))
	}

	// The last sync is stamped on the raw clock, as keysync judges it.
	cf := cacheFacts{path: l.Cache.Path(), now: raw, freshAt: fst.FreshAt, maxAge: fst.MaxAge}
	var journalErr error
	cf.checkAge, cf.checkErr, journalErr = l.integrity(deep)
	cf.checked = true
	cst, err := (&cache.Store{Cache: l.Cache, Journal: l.Journal}).Stats()
	cf.stats, cf.statsErr, cf.fileBytes = &cst, err, cst.FileSize
	fs, ferr := l.Cache.Feed()
	cf.feed = fs
	if cf.statsErr == nil {
		cf.statsErr = ferr
	}
	cf.diskFree, cf.diskErr = diskFree(l.Cache.Path())
	if p, ok := ready.Find(health.NotRecording); ok {
		cf.record, cf.recordSince = p.Err, p.Since
	}
	if p, ok := ready.Find(health.CacheNotWritable); ok && cf.record == nil {
		cf.record = p.Err // its file system is read-only: nothing can be written
	}
	r.Add(judgeCache(cf))
	rf := recordsFacts{daemon: true, checkAge: cf.checkAge, cacheRun: true, jnlRun: true}
	l.checkMu.Lock()
	rf.cache, rf.cacheErr, rf.journal, rf.jnlErr = l.cacheAuth, l.cacheAuthErr, l.journalAuth, l.journalAuthErr
	l.checkMu.Unlock()
	if l.Damaged != nil {
		rf.damaged = l.Damaged()
	}
	r.Add(judgeRecords(rf))

	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	probe, perr := l.Feed.Probe(pctx)
	cancel()
	r.Add(judgeFeed(feedFacts{url: cfg.Feed.URL, probe: probe, err: perr, cursor: fs.Cursor, epoch: fs.Epoch, cursorKnown: ferr == nil}))
	b, berr := l.Journal.Backlog()
	if journalErr != nil {
		berr = journalErr
	}
	r.Add(judgeBacklog(b, berr, now, fst.LastError))
	if l.Wear != nil {
		r.Add(l.WearCheck())
	}
	r.Add(judgeLatency(l.Metrics.Latency(), true))
	r.Add(l.peersCheck())
	return r
}

// clockFacts gathers the clock check's facts from the running agent: its
// learnt offset (applied to every code), the step offsets and the clock
// refusals its metrics counted, and the kernel clock's state.
func (l *Live) clockFacts(raw time.Time, fst keysync.Status) clockFacts {
	d := l.Metrics.Drift()
	var offsets []int64
	for off, n := range d.Counts {
		for range n {
			offsets = append(offsets, off)
		}
	}
	f := clockFacts{raw: raw, trustedAfter: l.TrustedAfter, offset: fst.Offset, offsetKnown: fst.OffsetOK, daemon: true,
		offsetFrom: "learnt by the agent", offsets: offsets, offsetsFrom: "scanned since the agent started",
		refusals: l.Metrics.ClockRefusals(), refusalsKnown: true, refusalsFrom: "counted by the agent"}
	read := l.ClockState
	if read == nil {
		read = kclock.Read
	}
	f.kernel, f.kernelErr = read()
	return f
}

// Clock is the clock check alone (gateagent diag clock).
func (l *Live) Clock() Check {
	return judgeClock(l.clockFacts(l.Now(), l.Feed.Status()))
}

// WearCheck is the wear check alone (gateagent diag wear), on the gate's
// corrected clock.
func (l *Live) WearCheck() Check {
	if l.Wear == nil {
		return Check{Name: NameWear, Status: Skip, Line: "not measured by this agent"}
	}
	return judgeWear(wearFacts{r: l.Wear(), daemon: true, now: l.Feed.Now()})
}

// maxTokenBody bounds a token sent to /diag/token.
const maxTokenBody = 4096

// Handler serves diag's requests on the control socket:
//
//	GET  /diag                       every check (Report)
//	GET  /diag/clock                 the clock check alone (Check)
//	GET  /diag/latency               per-stage latency ([]metrics.StageLatency)
//	GET  /diag/wear                  the wear check alone (Check)
//	GET  /diag/peers                 the station peers (station.Status)
//	GET  /diag/sensors?seconds=N     the inputs, one JSON Reading per line, for N s
//	POST /diag/token?source=S        explain the token in the body (TokenReport)
//	POST /diag/scan?timeout=D        explain the next code scanned; nothing moves
//	POST /diag/relay?pulse=D         the technician's relay test (gate.TestResult)
//	POST /diag/indicators            the lamp and buzzer test
//
// Tests of the outputs are POSTs and are logged with the caller's uid.
func (l *Live) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /diag", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, l.Report(r.Context(), r.URL.Query().Get("deep") == "1"))
	})
	mux.HandleFunc("GET /diag/clock", func(w http.ResponseWriter, r *http.Request) {
		c := l.Clock()
		writeJSON(w, &c)
	})
	mux.HandleFunc("GET /diag/latency", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, l.Metrics.Latency())
	})
	mux.HandleFunc("GET /diag/wear", func(w http.ResponseWriter, r *http.Request) {
		c := l.WearCheck()
		writeJSON(w, &c)
	})
	mux.HandleFunc("GET /diag/sensors", l.serveSensors)
	mux.HandleFunc("GET /diag/peers", l.servePeers)
	mux.HandleFunc("POST /diag/token", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxTokenBody+1))
		if err != nil || len(body) > maxTokenBody {
			http.Error(w, fmt.Sprintf("the token must be at most %d bytes (a TR1 code is 58)", maxTokenBody), http.StatusRequestEntityTooLarge)
			return
		}
		l.explain(w, body, r.URL.Query().Get("source"))
	})
	mux.HandleFunc("POST /diag/scan", l.serveScan)
	mux.HandleFunc("POST /diag/relay", func(w http.ResponseWriter, r *http.Request) {
		pulse, err := time.ParseDuration(r.URL.Query().Get("pulse"))
		if err != nil || pulse <= 0 { // never the default: the relay moves only when asked explicitly
			http.Error(w, "give pulse=DURATION, e.g. 500ms", http.StatusBadRequest)
			return
		}
		l.serveTest(w, r, gate.TestRelay, pulse)
	})
	mux.HandleFunc("POST /diag/indicators", func(w http.ResponseWriter, r *http.Request) {
		l.serveTest(w, r, gate.TestIndicators, 0)
	})
	return mux
}

func (l *Live) explain(w http.ResponseWriter, text []byte, source string) {
	if source == "" {
		source = "argument"
	}
	// A cache that cannot be read (or refuses, being stale) is in the
	// report: the gate cannot decide, and says why.
	rep, _ := ExplainToken(l.Verifier, text, l.Feed.Now())
	rep.Source = source
	writeJSON(w, &rep)
}

func (l *Live) serveScan(w http.ResponseWriter, r *http.Request) {
	timeout := 30 * time.Second
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 10*time.Minute {
			http.Error(w, "timeout: use a duration up to 10m", http.StatusBadRequest)
			return
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	s, err := l.Gate.NextScan(ctx)
	switch {
	case errors.Is(err, gate.ErrBusy):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		http.Error(w, fmt.Sprintf("no code scanned within %s: hold a code under the scanner; if its light does not come on, check its power and cable", timeout), http.StatusGatewayTimeout)
		return
	}
	l.explain(w, s.Text, "scanner")
}

func (l *Live) serveTest(w http.ResponseWriter, r *http.Request, kind gate.TestKind, pulse time.Duration) {
	l.Logger.Info("technician test requested over the control socket", "test", kind.String(), "pulse", pulse, "peer", control.PeerOf(r).String())
	res, err := l.Gate.Test(r.Context(), kind, pulse)
	switch {
	case errors.Is(err, gate.ErrBusy):
		http.Error(w, err.Error(), http.StatusConflict)
	case err != nil:
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
	default:
		writeJSON(w, res)
	}
}

func (l *Live) serveSensors(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("seconds"))
	if err != nil || n < 1 || n > 600 {
		http.Error(w, "seconds: use 1 to 600", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	WatchInputs(r.Context(), l.Board, time.Duration(n)*time.Second, l.Now, func(rd Reading) error {
		if err := enc.Encode(rd); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	e.Encode(v)
}
