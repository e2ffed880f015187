// Package keysync is the gate's side of the key feed: it keeps the bbolt
// key cache in step with the issuer, learns the offset between the gate's
// clock and the issuer's, tracks how stale the cache is, and uploads the
// gate's event log.
//
// Every document is checked (signature, then kind, epoch and position)
// before anything is written, and each is applied in one cache
// transaction with its cursor: a failure at any point leaves the cache as
// it was, and the next round resumes from the stored cursor.
package keysync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/feed"
	"gateagent/internal/backoff"
	"gateagent/internal/logging"
	"gateagent/internal/wait"
	"gateagent/verify"
)

// Config configures a Client. Zero fields take the defaults.
type Config struct {
	// URL is the issuer's base URL, e.g. https://keys.station.example/.
	URL string
	// Keys are the issuer keys trusted to sign the feed.
	Keys feed.Keyring
	// Fleet holds the fleet private keys that open the certificate keys
	// sealed in the feed's pages. Nil only where no page is read (diag's
	// probe of the head).
	Fleet *feed.Fleet
	// Cache is the gate's key cache.
	Cache *cache.Cache
	// Journal is the gate's event log: its events are uploaded and the
	// staleness alarm is recorded in it. Nil: no upload, the alarm only
	// logged (diag's probes).
	Journal *cache.Journal
	// GateID names the gate in event uploads.
	GateID string
	// Interval between polls when all is well. Default 10 s.
	Interval time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failure: after n
	// failures in a row it is random in [MinBackoff, MinBackoff·2ⁿ⁻¹],
	// capped at MaxBackoff (internal/backoff). Defaults 1 s and 5 min.
	MinBackoff, MaxBackoff time.Duration
	// RefuseWhenStale makes Guard's store refuse lookups once the cache is
	// past the feed's maximum age, so the gate sends passengers to the
	// manual channel instead of trusting an old cache.
	RefuseWhenStale bool
	// StaleRetry replaces the growing backoff while the gate cannot grant
	// for want of a fresh cache (stale with RefuseWhenStale, or never
	// synced): a failed round is retried after a jittered wait in
	// [StaleRetry/2, StaleRetry], so the gate grants again within seconds
	// of the issuer's return. Default 5 s.
	StaleRetry time.Duration
	// HTTP is the client for the issuer; default a client with a 30 s
	// timeout. Build one with TLS settings with NewHTTPClient.
	HTTP *http.Client
	// UploadBatch is the number of events in one upload. Default 500.
	UploadBatch int
	// Now is the gate's own clock. Default time.Now.
	Now func() time.Time
	// Sleep waits for d or until ctx ends; default a timer. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger; default discards.
	Logger *slog.Logger
}

// Errors of the client, wrapped with detail.
var (
	// ErrGone: the issuer no longer keeps the position asked for.
	ErrGone = errors.New("the issuer no longer keeps this feed position: resyncing from a snapshot")
	// ErrMisdirected: a validly signed document is not the one asked for
	// (a replayed or misrouted answer).
	ErrMisdirected = errors.New("feed answer is not the document asked for (replayed or misrouted): check the station proxy")
	// ErrStale: the cache is past the feed's maximum age and the config
	// says to refuse tokens then.
	ErrStale = errors.New("key cache is stale and refuse_when_stale is set: check the gate's network path to the issuer")
	// ErrRedirect: an answer redirects to another scheme or host than
	// the feed's URL. It is not followed: the gate's event log (which
	// certificates passed where) goes to the issuer it was configured
	// with, and nowhere else.
	ErrRedirect = errors.New("the issuer's address redirects to another host or scheme: not followed")
)

// Client syncs one cache from one issuer.
type Client struct {
	cfg  Config
	base *url.URL
	log  *slog.Logger

	mu         sync.Mutex
	offset     time.Duration
	offsetOK   bool
	rtt        time.Duration
	freshAt    time.Time // gate time the cache was last known caught up
	maxAge     time.Duration
	head       uint64
	lastErr    error
	lastErrAt  time.Time
	failures   int
	uploaded   uint64
	alarmState bool // the last stale state written as an event

	// heal holds the certificates whose records failed authentication,
	// for the next round to refetch (a full resync) and settle.
	heal map[verify.CertID]bool

	// alarmMu makes each staleness check, its log line and its event one
	// step, so that transitions are recorded in the order they happen.
	alarmMu sync.Mutex
	// synced is signalled when a round has moved freshAt: the staleness
	// timer starts over. wake is signalled when the cache turns stale
	// while Run waits out a backoff: it retries at once.
	synced, wake chan struct{}
}

// New checks cfg and returns a client resumed from the cache's state.
func New(cfg Config) (*Client, error) {
	if cfg.Cache == nil {
		return nil, errors.New("keysync: no cache")
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	fs, err := cfg.Cache.Feed()
	if err != nil {
		return nil, fmt.Errorf("keysync: %w", err)
	}
	c.freshAt, c.maxAge, c.head = fs.SyncedAt, fs.MaxAge, fs.Cursor
	return c, nil
}

// ProbeHead is Probe without a cache: for diag, when the cache file cannot
// be read but the feed should still be checked. cfg.Cache is not used.
func ProbeHead(ctx context.Context, cfg Config) (Probe, error) {
	c, err := newClient(cfg)
	if err != nil {
		return Probe{}, err
	}
	return c.Probe(ctx)
}

// newClient checks cfg, but for its cache, and fills in the defaults.
func newClient(cfg Config) (*Client, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("keysync: no trusted issuer keys: add the line `issuer keygen` printed to the gate's config")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("keysync: issuer URL %q: want http(s)://host[:port]/", cfg.URL)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Minute, cfg.MinBackoff)
	}
	if cfg.StaleRetry <= 0 {
		cfg.StaleRetry = 5 * time.Second
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	hc := *cfg.HTTP // the caller's client is left as it was
	hc.CheckRedirect = sameOrigin(u)
	cfg.HTTP = &hc
	if cfg.UploadBatch <= 0 || cfg.UploadBatch > feed.MaxUploadEvents {
		cfg.UploadBatch = 500
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = wait.Sleep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, base: u, log: cfg.Logger, synced: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		heal: map[verify.CertID]bool{}}, nil
}

// Run polls until ctx ends: sync, upload, then wait the interval, or a
// growing, jittered backoff after a failure. While the gate cannot grant
// for want of a fresh cache (stale with RefuseWhenStale, or never synced)
// a failure is retried after StaleRetry instead. The staleness alarm has a
// timer of its own, set for the moment the cache passes the feed's
// maximum age: it does not wait for the next round. Run returns ctx's
// error.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	// An outage would log a failed round every few seconds while the gate
	// cannot grant: each kind of trouble is written once, then counted.
	repeats := logging.NewTimedRepeats(c.log, RepeatEvery)
	defer func() {
		stopWatch()
		wg.Wait()
		repeats.Close()
	}()
	var (
		lastKey      string    // the repeats' key of the last failure
		failingSince time.Time // the first failure of the current run of them
		lastFailures int       // failures in a row before this round
	)
	for round := 0; ; round++ {
		_, err := c.Sync(ctx)
		if err == nil {
			_, err = c.Upload(ctx)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if round == 0 {
			// The first round judged the cache as the agent found it;
			// from now on the timer watches it.
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.watchStale(wctx)
			}()
		}
		pause := c.cfg.Interval
		c.mu.Lock()
		if err != nil {
			c.failures++
			c.lastErr, c.lastErrAt = err, c.cfg.Now()
			pause = backoff.Policy{Min: c.cfg.MinBackoff, Max: c.cfg.MaxBackoff}.Delay(c.failures)
			// A gate that cannot grant (no fresh cache), or that holds
			// records waiting to be refetched (their passengers are
			// refused), retries on the short interval.
			if c.starved(c.cfg.Now()) || len(c.heal) > 0 {
				pause = backoff.Policy{Min: c.cfg.StaleRetry / 2, Max: c.cfg.StaleRetry}.Delay(2)
			}
		} else {
			c.failures, c.lastErr = 0, nil
		}
		failures := c.failures
		c.mu.Unlock()
		switch {
		case err != nil:
			if failures == 1 {
				failingSince = c.cfg.Now()
			}
			tr := Diagnose(err)
			if key := "round: " + tr.String(); key != lastKey {
				repeats.End(lastKey)
				lastKey = key
			}
			repeats.Log(slog.LevelWarn, lastKey, "key feed round failed", "err", err, "trouble", tr.String(), "fix", tr.fix(),
				"failures", failures, "retry_in", pause.Round(time.Millisecond))
		case lastKey != "":
			repeats.End(lastKey)
			lastKey = ""
			c.log.Info("key feed reachable again after "+c.cfg.Now().Sub(failingSince).Round(time.Second).String(),
				"failed_rounds", lastFailures)
		}
		lastFailures = failures
		if err := c.pause(ctx, pause); err != nil {
			return err
		}
	}
}

// RepeatEvery is the interval over which the feed client counts failed
// rounds of one kind of trouble instead of logging each.
const RepeatEvery = time.Minute

// pause waits d, or less when the cache turns stale meanwhile (wake).
func (c *Client) pause(ctx context.Context, d time.Duration) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.wake:
			cancel()
		case <-sctx.Done():
		}
	}()
	_ = c.cfg.Sleep(sctx, d)
	return ctx.Err()
}

// persistEvery is how often an idle round stores the time of the last sync.
const persistEvery = 5 * time.Minute

// Result says what one Sync did.
type Result struct {
	Head      uint64
	Cursor    uint64
	Resynced  bool
	Documents int
	Upserts   int
	Revokes   int
	// Replaced counts the records that failed authentication and were
	// replaced by the feed's; Healed lists the certificates whose
	// refetch was asked (Heal) and that this round settled.
	Replaced int
	Healed   []verify.CertID
}

// Sync brings the cache up to the issuer's head: a snapshot first when the
// cache is empty, of another epoch, or too far behind; then log pages.
func (c *Client) Sync(ctx context.Context) (Result, error) {
	var res Result
	defer c.checkStale()
	hctx := ctx
	c.mu.Lock()
	starved := c.starved(c.cfg.Now())
	c.mu.Unlock()
	if starved {
		// Every second counts: a head that hangs is given up on in time
		// for the next retry.
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, c.cfg.StaleRetry)
		defer cancel()
	}
	head, err := c.fetchHead(hctx)
	if err != nil {
		return res, err
	}
	res.Head = head.Next
	fs, err := c.cfg.Cache.Feed()
	forced := false
	if errors.Is(err, cache.ErrAuth) {
		// The cursor cannot be trusted: start a full sync over, which
		// writes it anew.
		c.alarm("key cache's feed state failed its integrity check (damaged on the disk): resyncing in full from the feed", err)
		fs, err, forced = cache.FeedState{}, nil, true
	}
	if err != nil {
		return res, fmt.Errorf("keysync: %w", err)
	}
	heal := c.takeHeal()
	defer func() {
		if len(heal) > 0 && len(res.Healed) == 0 {
			// Not settled this round: the next one tries again (on the
			// short retry, without waking the wait at once).
			c.mu.Lock()
			for _, id := range heal {
				c.heal[id] = true
			}
			c.mu.Unlock()
		}
	}()
	if len(heal) > 0 {
		// Records that failed authentication: refetch every certificate
		// from a snapshot (a station proxy usually holds its pages).
		forced = true
		fs.Resync = nil
	}
	needSnapshot := forced || fs.Epoch != head.Epoch || fs.Cursor > head.Next || fs.Resync != nil
	for attempt := 0; ; attempt++ {
		if needSnapshot {
			if err := c.snapshot(ctx, head, &fs, &res); err != nil {
				return res, err
			}
			res.Resynced = true
		}
		err = c.followLog(ctx, head, &fs, &res)
		if errors.Is(err, ErrGone) && attempt == 0 {
			c.log.Warn("key feed: the issuer no longer keeps the gate's position; resyncing", "cursor", fs.Cursor)
			needSnapshot = true
			fs.Resync = nil
			continue
		}
		if err != nil {
			return res, err
		}
		break
	}
	res.Cursor = fs.Cursor
	for _, id := range heal {
		state, err := c.cfg.Cache.Settle(id)
		if err != nil {
			return res, fmt.Errorf("keysync: %w", err)
		}
		res.Healed = append(res.Healed, id)
		c.log.Info("damaged record healed", "cert", id, "now", state)
	}
	now := c.cfg.Now()
	// An idle round changes only the time of the last sync. Writing it on
	// every 10 s poll would wear the board's flash for nothing: it is
	// kept in memory and stored every few minutes, for a restart.
	if res.Documents == 0 && (now.Sub(fs.SyncedAt) >= persistEvery || fs.MaxAge != head.MaxAge) {
		fs.SyncedAt, fs.IssuerTime, fs.MaxAge = now, head.IssuerTime, head.MaxAge
		if err := c.cfg.Cache.RecordSync(fs); err != nil {
			return res, fmt.Errorf("keysync: %w", err)
		}
	}
	c.mu.Lock()
	c.freshAt, c.maxAge, c.head = now, head.MaxAge, head.Next
	c.mu.Unlock()
	select {
	case c.synced <- struct{}{}:
	default:
	}
	if res.Documents > 0 {
		c.log.Info("key feed synced", "cursor", res.Cursor, "head", res.Head, "upserts", res.Upserts, "revokes", res.Revokes, "resync", res.Resynced)
	}
	if res.Replaced > 0 {
		c.log.Warn("records that failed their integrity check were replaced by the feed's", "records", res.Replaced)
	}
	return res, nil
}

// Heal asks for the certificates ids, whose records failed
// authentication, to be refetched from the feed at once: the next round
// (started now, not after the poll interval) takes a full snapshot, which
// overwrites every record with the feed's authenticated one, and then
// settles each of ids (cache.Settle): healed, or deleted when the feed no
// longer holds it.
func (c *Client) Heal(ids ...verify.CertID) {
	c.mu.Lock()
	for _, id := range ids {
		c.heal[id] = true
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Client) takeHeal() []verify.CertID {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []verify.CertID
	for id := range c.heal {
		ids = append(ids, id)
	}
	clear(c.heal)
	return ids
}

// alarm logs an error and records it as an alarm event.
func (c *Client) alarm(detail string, err error) {
	c.log.Error(detail, "err", err)
	if c.cfg.Journal == nil {
		return
	}
	if _, err := c.cfg.Journal.AppendEvent(event.Event{Time: c.cfg.Now(), Kind: event.Alarm, Detail: detail}); err != nil {
		c.log.Error("could not record the alarm", "err", err)
	}
}

func (c *Client) feedState(d *feed.Doc) cache.FeedState {
	return cache.FeedState{KeyID: d.KeyID, IssuerTime: d.IssuerTime, MaxAge: d.MaxAge, SyncedAt: c.cfg.Now(), Epoch: d.Epoch}
}

// snapshot reads the head's snapshot (or resumes the one under way) page by
// page; each page is one transaction with the resync's progress.
func (c *Client) snapshot(ctx context.Context, head *feed.Doc, fs *cache.FeedState, res *Result) error {
	snap, after := head.Snapshot, verify.CertID{}
	if r := fs.Resync; r != nil && r.Epoch == head.Epoch && r.Snapshot <= head.Next {
		snap, after = r.Snapshot, r.After
	}
	for restarted := false; ; restarted = true {
		err := c.snapshotFrom(ctx, head, snap, after, res)
		if errors.Is(err, ErrGone) && !restarted && snap != head.Snapshot {
			// The resync under way was overtaken: start the current one.
			snap, after = head.Snapshot, verify.CertID{}
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	nfs, err := c.cfg.Cache.Feed()
	if err != nil {
		return fmt.Errorf("keysync: %w", err)
	}
	*fs = nfs
	return nil
}

// snapshotFrom reads snapshot snap from after to its last page. A fetcher
// goroutine fetches and checks the next page (network, signature, parse)
// while this one applies the current page (one cache transaction): the
// two overlap on a two-core board.
func (c *Client) snapshotFrom(ctx context.Context, head *feed.Doc, snap uint64, after verify.CertID, res *Result) error {
	type page struct {
		d   *feed.Doc
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan page, 1)
	go func() {
		defer close(pages)
		for after := after; ; {
			d, err := c.fetch(ctx, "v1/feed/snapshot/"+strconv.FormatUint(snap, 10)+"/"+after.String())
			if err == nil && (d.Kind != feed.KindSnapshot || d.Epoch != head.Epoch || d.Snapshot != snap || d.After != after) {
				err = fmt.Errorf("keysync: snapshot %d after %s: %w (got %s %d after %s)", snap, after, ErrMisdirected, d.Kind, d.Snapshot, d.After)
			}
			if err == nil && !d.Final && len(d.Upserts) == 0 {
				err = fmt.Errorf("keysync: snapshot %d after %s: %w (an empty page that is not the last)", snap, after, ErrMisdirected)
			}
			select {
			case pages <- page{d, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || d.Final {
				return
			}
			after = d.Upserts[len(d.Upserts)-1].ID
		}
	}()
	for pg := range pages {
		if pg.err != nil {
			return pg.err
		}
		d := pg.d
		r, err := c.cfg.Cache.ApplySnapshot(&cache.SnapshotPage{
			Epoch: d.Epoch, Snapshot: d.Snapshot, After: d.After, Final: d.Final, Upserts: d.Upserts, Feed: c.feedState(d),
		})
		if err != nil {
			return fmt.Errorf("keysync: %w", err)
		}
		res.Replaced += len(r.Replaced)
		res.Documents++
		res.Upserts += len(d.Upserts)
	}
	return ctx.Err()
}

// followLog applies log pages from the cursor up to the head.
func (c *Client) followLog(ctx context.Context, head *feed.Doc, fs *cache.FeedState, res *Result) error {
	n := uint64(head.PageSize)
	for fs.Cursor < head.Next {
		p := fs.Cursor / n
		path := "v1/feed/log/" + strconv.FormatUint(p, 10)
		body, err := c.get(ctx, path)
		if err != nil {
			return err
		}
		if err := c.applyLog(head, fs, p, path, body, res); err != nil {
			return err
		}
	}
	return nil
}

// applyLog checks the answer for log page p and applies it: the only way
// feed bytes reach the cache during log following.
func (c *Client) applyLog(head *feed.Doc, fs *cache.FeedState, p uint64, path string, body []byte, res *Result) error {
	n := uint64(head.PageSize)
	d, err := c.open(path, body)
	if err != nil {
		return err
	}
	if d.Kind != feed.KindLog || d.Epoch != head.Epoch || d.From != p*n || d.Next <= fs.Cursor {
		return fmt.Errorf("keysync: log page %d: %w (got %s (%d, %d] of epoch %x)", p, ErrMisdirected, d.Kind, d.From, d.Next, d.Epoch)
	}
	r, err := c.cfg.Cache.Apply(&cache.Batch{From: d.From, Next: d.Next, Upserts: d.Upserts, Revokes: d.Revokes, Feed: c.feedState(d)})
	if err != nil {
		return fmt.Errorf("keysync: %w", err)
	}
	fs.Cursor = r.Cursor
	res.Replaced += len(r.Replaced)
	res.Documents++
	res.Upserts += len(d.Upserts)
	res.Revokes += len(d.Revokes)
	return nil
}

// fetchHead asks for the head with a fresh nonce and learns the clock
// offset from it.
func (c *Client) fetchHead(ctx context.Context) (*feed.Doc, error) {
	d, t0, rtt, err := c.headRoundTrip(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rtt >= 0 && rtt < maxOffsetRTT {
		c.offset = offsetOf(d, t0, rtt)
		c.offsetOK, c.rtt = true, rtt
	} else {
		c.log.Warn("key feed: round trip too slow to learn the clock offset", "rtt", rtt)
	}
	return d, nil
}

// headRoundTrip fetches the head with a fresh nonce and checks that it is
// the answer to this request; t0 is when it was asked for.
func (c *Client) headRoundTrip(ctx context.Context) (d *feed.Doc, t0 time.Time, rtt time.Duration, err error) {
	var nonce [feed.NonceLen]byte
	rand.Read(nonce[:])
	t0 = c.cfg.Now()
	d, err = c.fetch(ctx, "v1/feed/head?nonce="+hex.EncodeToString(nonce[:]))
	rtt = c.cfg.Now().Sub(t0)
	if err != nil {
		return nil, t0, rtt, err
	}
	if d.Kind != feed.KindHead || d.Nonce != nonce {
		return nil, t0, rtt, fmt.Errorf("keysync: head: %w (nonce or kind differs)", ErrMisdirected)
	}
	return d, t0, rtt, nil
}

// maxOffsetRTT: a slower round trip says too little of the issuer's clock.
const maxOffsetRTT = 5 * time.Second

// offsetOf is the issuer's clock minus the gate's: the issuer stamped the
// head between t0 and t0+rtt, so take the middle.
func offsetOf(d *feed.Doc, t0 time.Time, rtt time.Duration) time.Duration {
	return d.IssuerTime.Sub(t0.Add(rtt / 2))
}

// Probe is what one round trip to the issuer's head found (for diag).
type Probe struct {
	// Head is the issuer's last change, in its Epoch.
	Head  uint64 `json:"head"`
	Epoch uint64 `json:"epoch"`
	// KeyID is the trusted key that signed the head.
	KeyID string `json:"key_id"`
	// IssuerTime is the issuer's clock; Offset is it minus the gate's
	// raw clock at the round trip's midpoint.
	IssuerTime time.Time     `json:"issuer_time"`
	Offset     time.Duration `json:"clock_offset"`
	// OffsetOK: the round trip was short enough (under maxOffsetRTT) for Offset
	// to mean anything, as the client requires to learn one.
	OffsetOK bool          `json:"clock_offset_ok"`
	RTT      time.Duration `json:"rtt"`
	MaxAge   time.Duration `json:"max_age"`
}

// Probe fetches the head once: is the issuer reachable, does TLS hold, is
// the signature one of the trusted keys, and where is the feed. It changes
// nothing: not the cache, not the client's learnt offset.
func (c *Client) Probe(ctx context.Context) (Probe, error) {
	d, t0, rtt, err := c.headRoundTrip(ctx)
	if err != nil {
		return Probe{RTT: rtt}, err
	}
	p := Probe{Head: d.Next, Epoch: d.Epoch, KeyID: d.KeyID, IssuerTime: d.IssuerTime, RTT: rtt, MaxAge: d.MaxAge}
	if rtt >= 0 && rtt < maxOffsetRTT {
		p.Offset, p.OffsetOK = offsetOf(d, t0, rtt), true
	}
	return p, nil
}

// sameOrigin follows a redirect only within base's scheme and host (a
// proxy that moves a path), at most 10 in a row.
func sameOrigin(base *url.URL) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != base.Scheme || !strings.EqualFold(req.URL.Host, base.Host) {
			return fmt.Errorf("%w (to %s://%s)", ErrRedirect, req.URL.Scheme, req.URL.Host)
		}
		if len(via) >= 10 {
			return fmt.Errorf("%w (10 in a row)", ErrRedirect)
		}
		return nil
	}
}

// maxBody bounds what is read of any answer.
const maxBody = feed.MaxDocLen + 1

func (c *Client) fetch(ctx context.Context, path string) (*feed.Doc, error) {
	body, err := c.get(ctx, path)
	if err != nil {
		return nil, err
	}
	return c.open(path, body)
}

// open checks a feed answer's signature, then parses it.
func (c *Client) open(path string, body []byte) (*feed.Doc, error) {
	d, err := feed.Open(body, c.cfg.Keys, c.cfg.Fleet)
	if err != nil {
		return nil, fmt.Errorf("keysync: GET /%s: %w", path, err)
	}
	return d, nil
}

// get fetches one feed answer, bounded in size.
func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	u, err := c.base.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("keysync: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("keysync: %w", err)
	}
	req.Header.Set("Accept", "application/vnd.gateagent.feed")
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("keysync: GET %s: %w", u.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("keysync: GET %s: reading the answer: %w", u.Path, err)
	}
	switch {
	case resp.StatusCode == http.StatusGone:
		return nil, fmt.Errorf("keysync: GET %s: %w", u.Path, ErrGone)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("keysync: GET %s: issuer answered %s: %s", u.Path, resp.Status, snippet(body))
	case len(body) >= maxBody:
		return nil, fmt.Errorf("keysync: GET %s: %w: answer over %d bytes", u.Path, feed.ErrFormat, feed.MaxDocLen)
	}
	return body, nil
}

func snippet(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	for i, c := range b {
		if c < 0x20 && c != '\n' || c >= 0x7f {
			b = b[:i]
			break
		}
	}
	return string(b)
}
