package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gateagent/gate"
	"gateagent/internal/backoff"
	"gateagent/internal/logging"
	"gateagent/internal/wait"
	"gateagent/verify"

	"go.bug.st/serial"
)

// Defaults and limits of Config.
const (
	DefaultBaud       = 9600
	DefaultMaxLine    = 512
	MaxLineLimit      = 64 << 10 // the largest MaxLine accepted
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	// DefaultRepeatWindow is the repeat window the daemon's configuration
	// uses unless told otherwise. In Config a zero RepeatWindow turns the
	// window off (the configuration file's "0s"), so callers that want the
	// default set it explicitly.
	DefaultRepeatWindow = 2 * time.Second
)

// Config is the serial scanner's settings. Zero fields take their
// defaults (see WithDefaults).
type Config struct {
	Port         string        // e.g. /dev/gate-scanner
	Baud         int           // default 9600
	Parity       string        // "none" (default), "even", "odd"
	DataBits     int           // 7 or 8 (default 8)
	StopBits     int           // 1 (default) or 2
	Terminator   Terminator    // default Auto (CR, LF or CRLF)
	MaxLine      int           // default 512; at most MaxLineLimit (64 KiB)
	RepeatWindow time.Duration // 0 disables; see Dedup (the daemon's default is DefaultRepeatWindow, 2s)
	MinBackoff   time.Duration // default 250ms
	MaxBackoff   time.Duration // default 5s
}

// WithDefaults returns c with each zero field set to its default. Parity
// is lower-cased. RepeatWindow is left alone: zero turns it off.
func (c Config) WithDefaults() Config {
	if c.Baud == 0 {
		c.Baud = DefaultBaud
	}
	c.Parity = strings.ToLower(strings.TrimSpace(c.Parity))
	if c.Parity == "" {
		c.Parity = "none"
	}
	if c.DataBits == 0 {
		c.DataBits = 8
	}
	if c.StopBits == 0 {
		c.StopBits = 1
	}
	if c.Terminator == 0 {
		c.Terminator = Auto
	}
	if c.MaxLine == 0 {
		c.MaxLine = DefaultMaxLine
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	return c
}

// Validate reports every setting NewSerial would refuse (zero fields take
// their defaults first), joined in one error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("scanner: "+format, args...))
	}
	if strings.TrimSpace(c.Port) == "" {
		bad("port is empty: set scanner.port to the scanner's device, e.g. /dev/gate-scanner")
	}
	if c.Baud < 0 {
		bad("baud %d: must be positive: use the scanner's setting, e.g. 9600 or 115200", c.Baud)
	}
	if _, ok := parities[c.Parity]; !ok {
		bad("parity %q unknown: use none, even or odd (as set in the scanner)", c.Parity)
	}
	if c.DataBits != 7 && c.DataBits != 8 {
		bad("data bits %d: use 7 or 8 (as set in the scanner)", c.DataBits)
	}
	if c.StopBits != 1 && c.StopBits != 2 {
		bad("stop bits %d: use 1 or 2 (as set in the scanner)", c.StopBits)
	}
	if !c.Terminator.valid() {
		bad("terminator %d unknown: use auto, cr, lf or crlf", uint8(c.Terminator))
	}
	if c.MaxLine < 1 || c.MaxLine > MaxLineLimit {
		bad("max line %d bytes: use 1 to %d", c.MaxLine, MaxLineLimit)
	}
	if c.RepeatWindow < 0 {
		bad("repeat window %v is negative: use 0 to turn it off, or e.g. 2s", c.RepeatWindow)
	}
	if c.MinBackoff < 0 || c.MaxBackoff < 0 || c.MinBackoff > c.MaxBackoff {
		bad("reconnect backoff %v..%v: need 0 < min ≤ max", c.MinBackoff, c.MaxBackoff)
	}
	return errors.Join(errs...)
}

var parities = map[string]serial.Parity{"none": serial.NoParity, "even": serial.EvenParity, "odd": serial.OddParity}

func (c Config) mode() *serial.Mode {
	stop := serial.OneStopBit
	if c.StopBits == 2 {
		stop = serial.TwoStopBits
	}
	// No InitialStatusBits: the port may be a pty or a USB CDC device
	// without modem lines, where setting them fails.
	return &serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits, Parity: parities[c.Parity], StopBits: stop}
}

// Options are a source's collaborators.
type Options struct {
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // the clock for the repeat window and Scan.At; nil: time.Now
	// Arriving, when set, is called when a frame's first bytes come in,
	// and what it returns once the frame is dealt with: handed to the
	// gate (as the Scan's Release, which the gate calls when it has
	// decided), dropped (a repeat, an over-long line), or cut off by the
	// port's loss; or ArrivalHold after its first bytes, if the frame is
	// still unended then. The agent gives the key cache's Foreground: a
	// code takes 5 ms to arrive at 115200 baud and 60 ms at 9600, and
	// the cache's own writes wait meanwhile, so that the one under way
	// when a passenger's code begins has ended when the gate decides.
	Arriving func() (done func())
}

// ArrivalHold is the longest a frame's arrival is marked (Options.Arriving)
// before its end: a TR1 code of 58 characters takes 61 ms at 9600 baud.
// A line that never ends (a scanner cut off mid-code, or sending without
// the configured terminator) holds the cache's writes back no longer.
const ArrivalHold = 200 * time.Millisecond

// Stats are a serial scanner's counters.
type Stats struct {
	Connected bool
	// Lines counts the frames delivered: Codes that read as a TR1 code
	// and Rejected lines that do not (garbage, a wrong terminator, a
	// misread; the gate refuses them as MALFORMED).
	Lines      uint64
	Codes      uint64
	Rejected   uint64
	Suppressed uint64 // repeats suppressed
	Overlong   uint64 // over-long lines dropped
	Reconnects uint64 // successful reopens after a loss
	// OpenFailures counts the attempts to open the port that failed.
	OpenFailures uint64
	// Bytes counts what the scanner sent: bytes but no lines mean it
	// sends codes the framing does not end (a wrong terminator).
	Bytes uint64
	// Endings counts the line endings the scanner sent (CR, LF, CRLF),
	// whatever the configured terminator: which one it actually sends.
	Endings  Endings
	LastScan time.Time
	// LastError is the open or read error since the port was last
	// opened, for diag; cleared when it opens again.
	LastError string
}

// Serial reads scans from a scanner on a serial line.
type Serial struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	arriving func() (done func())
	running  atomic.Bool
	// tried is closed once Run has tried to open the port the first time.
	tried     chan struct{}
	triedOnce sync.Once

	mu    sync.Mutex
	stats Stats
}

// NewSerial applies cfg's defaults and validates it.
func NewSerial(cfg Config, opts Options) (*Serial, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Serial{cfg: cfg, log: opts.Logger, now: opts.Now, arriving: opts.Arriving, tried: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Tried is closed once Run has tried to open the port for the first time,
// whether it opened or not (Stats then says which): until then the
// scanner's absence is not known.
func (s *Serial) Tried() <-chan struct{} { return s.tried }

func (s *Serial) markTried() { s.triedOnce.Do(func() { close(s.tried) }) }

// Config returns the settings in use, defaults applied.
func (s *Serial) Config() Config { return s.cfg }

// Stats returns the counters. It is safe to call concurrently with Run.
func (s *Serial) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Serial) update(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// Probe opens and closes the port once (for diag): nil if it opens. cfg's
// defaults are applied and it is validated first.
func Probe(cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	p, err := open(cfg)
	if err != nil {
		return err
	}
	if err := p.Close(); err != nil {
		return fmt.Errorf("scanner: close %s: %w", cfg.Port, err)
	}
	return nil
}

// open opens the port, with an error that tells the operator what to do.
func open(cfg Config) (serial.Port, error) {
	p, err := serial.Open(cfg.Port, cfg.mode())
	if err == nil {
		return p, nil
	}
	hint := "check the scanner's cable and scanner.port in the config"
	var pe *serial.PortError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		hint = "is the scanner plugged in? check its cable and scanner.port in the config"
	case errors.As(err, &pe) && pe.Code() == serial.PortBusy:
		hint = "another program holds the port: stop it (a second gateagent, a terminal program?)"
	case errors.As(err, &pe) && pe.Code() == serial.PermissionDenied,
		errors.Is(err, fs.ErrPermission):
		hint = "give the agent's user access to the port (e.g. the dialout group, or the udev rule in configs/)"
	case errors.As(err, &pe) && pe.Code() == serial.InvalidSerialPort:
		hint = "not a serial port, or its line settings are refused: check scanner.port, scanner.baud, scanner.parity, scanner.data_bits and scanner.stop_bits"
	case errors.As(err, &pe) && (pe.Code() == serial.InvalidSpeed || pe.Code() == serial.InvalidParity ||
		pe.Code() == serial.InvalidDataBits || pe.Code() == serial.InvalidStopBits):
		hint = "check scanner.baud, scanner.parity, scanner.data_bits and scanner.stop_bits against the scanner's settings"
	}
	return nil, fmt.Errorf("scanner: open %s: %w: %s", cfg.Port, err, hint)
}

// RepeatEvery is the interval over which the scanner counts a repeated
// log line (the port not available, a line too long) instead of writing it.
const RepeatEvery = time.Minute

// openKey is the prefix of the repeats' key of an open failure.
const openKey = "open: "

// readBufSize is the size of each read from the port.
const readBufSize = 4096

// Run opens the port and sends each scan on out until ctx ends, then
// returns ctx.Err().
//
// When the port vanishes or fails it logs "scanner port lost", closes it and
// reopens it with exponential backoff (MinBackoff doubling up to
// MaxBackoff, with jitter: internal/backoff) until that succeeds, and logs "scanner port
// open". A port that cannot be opened at start is retried the same way.
// Over-long lines are dropped, logged with their length and counted;
// repeats within the repeat window are suppressed and counted. The text
// of a scan is never logged.
//
// Sending on out blocks until the consumer takes the scan or ctx ends. Run
// must not be called again while it runs.
func (s *Serial) Run(ctx context.Context, out chan<- gate.Scan) error {
	if out == nil {
		return errors.New("scanner: Run needs a channel for the scans")
	}
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("scanner: Run is already running for this scanner")
	}
	defer s.running.Store(false)

	log := s.log.With("port", s.cfg.Port)
	// A scanner left unplugged would log the same line every few seconds,
	// and one that sends garbage a line per line: each kind is written
	// once and then counted.
	repeats := logging.NewTimedRepeats(log, RepeatEvery)
	defer repeats.Close()
	dedup := NewDedup(s.cfg.RepeatWindow)
	retry := backoff.New(s.cfg.MinBackoff, s.cfg.MaxBackoff)
	everOpen := false
	lastOpenErr := ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		port, err := open(s.cfg)
		if err != nil {
			msg := err.Error()
			s.update(func(st *Stats) { st.LastError = msg; st.OpenFailures++ })
			s.markTried()
			pause := retry.Fail()
			if msg != lastOpenErr {
				repeats.End(openKey + lastOpenErr)
			}
			lastOpenErr = msg
			repeats.Log(slog.LevelWarn, openKey+msg, "scanner port not available", "err", err, "retry_in", pause)
			if wait.Sleep(ctx, pause) != nil {
				return ctx.Err()
			}
			continue
		}
		repeats.End(openKey + lastOpenErr)
		lastOpenErr = ""
		s.update(func(st *Stats) {
			st.Connected, st.LastError = true, ""
			if everOpen {
				st.Reconnects++
			}
		})
		everOpen = true
		s.markTried()
		log.Info("scanner port open", "baud", s.cfg.Baud, "parity", s.cfg.Parity, "data_bits", s.cfg.DataBits,
			"stop_bits", s.cfg.StopBits, "terminator", s.cfg.Terminator.String())
		opened := time.Now()

		err = s.read(ctx, port, out, dedup, log, repeats)
		_ = port.Close()
		s.update(func(st *Stats) { st.Connected = false })
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		msg := err.Error()
		s.update(func(st *Stats) { st.LastError = msg })
		// A port that stayed up a while starts the backoff afresh; one
		// that fails at once keeps growing it.
		if time.Since(opened) >= s.cfg.MaxBackoff {
			retry.Reset()
		}
		pause := retry.Fail()
		log.Warn("scanner port lost", "err", err, "retry_in", pause)
		if wait.Sleep(ctx, pause) != nil {
			return ctx.Err()
		}
	}
}

// read reads frames from port until it fails or ctx ends.
func (s *Serial) read(ctx context.Context, port serial.Port, out chan<- gate.Scan, dedup *Dedup, log *slog.Logger, repeats *logging.Repeats) error {
	// Closing the port from another goroutine unblocks a pending Read.
	stop := context.AfterFunc(ctx, func() { _ = port.Close() })
	defer stop()

	fr := NewFramer(s.cfg.Terminator, s.cfg.MaxLine)
	base := s.Stats().Endings // those of the connections before this one
	buf := make([]byte, readBufSize)
	var at time.Time
	aborted := false
	// arrival is the mark taken when the frame now arriving began
	// (Options.Arriving); nil when none is taken.
	var arrival *mark
	defer func() { arrival.end() }()
	emit := func(f Frame) {
		held := arrival
		arrival = nil
		if aborted {
			held.end()
			return
		}
		if f.Dropped > 0 {
			held.end()
			s.update(func(st *Stats) { st.Overlong++ })
			repeats.Log(slog.LevelWarn, "overlong", "scanner line too long, dropped", "length", f.Dropped, "max_line", s.cfg.MaxLine)
			return
		}
		if dedup.Seen(f.Line, at) {
			held.end()
			s.update(func(st *Stats) { st.Suppressed++ })
			log.Debug("scanner repeat suppressed", "length", len(f.Line))
			return
		}
		if !held.live() { // a second frame of one read, or one slower than ArrivalHold
			held = s.arrive()
		}
		scan := gate.Scan{Text: bytes.Clone(f.Line), At: at, Began: f.Began, Source: s.cfg.Port}
		if held != nil {
			scan.Release = held.end
		}
		endings := base.Add(fr.Endings()) // as of this read, before the scan is handed on
		// Counted before the send, so that a consumer that has the scan
		// sees it in Stats; taken back if it is never taken.
		var prev time.Time
		// A line that does not read as a TR1 code is still the gate's to
		// refuse (MALFORMED, with the passenger told to scan again); it
		// is counted apart from the codes.
		_, perr := verify.ParseToken(scan.Text)
		code := perr == nil
		count := func(st *Stats, d uint64) {
			st.Lines += d
			if code {
				st.Codes += d
			} else {
				st.Rejected += d
			}
		}
		s.update(func(st *Stats) { count(st, 1); prev, st.LastScan, st.Endings = st.LastScan, at, endings })
		select {
		case out <- scan:
			log.Debug("scanner line", "length", len(scan.Text), "code", code)
		case <-ctx.Done():
			held.end()
			s.update(func(st *Stats) { count(st, ^uint64(0)); st.LastScan = prev })
			aborted = true
		}
	}
	for {
		n, err := readPort(port, buf)
		at = s.now()
		if n > 0 {
			s.update(func(st *Stats) { st.Bytes += uint64(n) })
			if arrival == nil {
				arrival = s.arrive()
			}
			fr.FeedAt(buf[:n], at, emit)
			switch {
			case fr.Pending() == 0: // no frame left arriving (bare terminators)
				arrival.end()
				arrival = nil
			case arrival == nil: // this read also began the next frame
				arrival = s.arrive()
			}
			e := base.Add(fr.Endings())
			s.update(func(st *Stats) { st.Endings = e })
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if err != nil {
			var pe *serial.PortError
			if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
				return fmt.Errorf("scanner: read %s: %w: the scanner was unplugged or its port went away", s.cfg.Port, err)
			}
			return fmt.Errorf("scanner: read %s: %w", s.cfg.Port, err)
		}
	}
}

// mark is a frame's arrival mark (Options.Arriving): ended once, by
// end or ArrivalHold after it was taken. A nil *mark is none.
type mark struct {
	ended atomic.Bool
	done  func()
	lapse *time.Timer
}

// arrive takes a frame's arrival mark; nil without Options.Arriving.
func (s *Serial) arrive() *mark {
	if s.arriving == nil {
		return nil
	}
	m := &mark{done: s.arriving()}
	m.lapse = time.AfterFunc(ArrivalHold, m.finish)
	return m
}

// end ends the mark, if it is not ended already. It is called on the
// goroutine that took the mark, or after the scan was handed on.
func (m *mark) end() {
	if m == nil {
		return
	}
	m.lapse.Stop()
	m.finish()
}

// finish ends the mark once.
func (m *mark) finish() {
	if m.ended.CompareAndSwap(false, true) {
		m.done()
	}
}

// live reports whether the mark holds still.
func (m *mark) live() bool { return m != nil && !m.ended.Load() }

// errHighDescriptor: go.bug.st/serial waits for a port with select(2),
// whose descriptor set holds descriptors 0 to 1023, and panics (an index
// out of range) reading a port opened on a higher one.
var errHighDescriptor = errors.New("the serial library cannot read a port whose file descriptor is above 1023: the agent holds too many files open (run gateagent diag, and restart the agent)")

// readPort is port.Read with the library's panic on a high descriptor
// (errHighDescriptor) made an error: the scanner's loop then reports it
// and reconnects, and the agent runs on, never granting without a scan.
func readPort(port serial.Port, buf []byte) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = 0, fmt.Errorf("%w (%v)", errHighDescriptor, r)
		}
	}()
	return port.Read(buf)
}
