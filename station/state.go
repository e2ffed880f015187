package station

import (
	"slices"
	"time"

	"gateagent/verify"
)

// grant is one grant of a certificate at one gate and what became of it:
// held until its passenger passed or it lapsed. It is identified by
// (cert, dir, gate, at). Every other field only ever moves one way (until
// up; released and passed from unknown to their earliest report), so
// merging the same reports in any order, any number of times, gives the
// same grant: gates that have heard the same things agree.
type grant struct {
	cert     verify.CertID
	dir      verify.Direction
	gate     string
	at       int64 // the grant, Unix ns on the granting gate's corrected clock
	until    int64 // the hold stands until then unless released or passed; 0: not known
	released int64 // the grant lapsed unused; 0: not (known to have)
	passed   int64 // the passenger walked through; 0: not (known to have)
	// mine: granted by this gate since this process started (Hold), as
	// opposed to learnt from a peer. Only a pair with one grant of its
	// own is reported as a double use, so that each double use is
	// reported by the two gates concerned, once each.
	mine bool
}

// horizon is the last instant g can matter: a refusal or a double use
// needs a grant within the window of one of its times.
func (g *grant) horizon(window int64) int64 {
	return max(g.at, g.until, g.released, g.passed) + window
}

// standing reports whether g was in force at t: granted at or before t,
// and then either still held (its passenger not yet through, the grant
// not lapsed) or passed within the window before t.
func (g *grant) standing(t, window int64) bool {
	switch {
	case g.at > t:
		return false
	case g.passed != 0:
		return g.passed > t || t-g.passed < window
	case g.released != 0:
		return t < g.released
	}
	return g.until != 0 && t < g.until
}

// merge folds o (the same grant, as another report has it) into g and
// reports whether g changed.
func (g *grant) merge(o *grant) bool {
	before := *g
	g.until = max(g.until, o.until)
	g.released = earliest(g.released, o.released)
	g.passed = earliest(g.passed, o.passed)
	return g.until != before.until || g.released != before.released || g.passed != before.passed
}

// earliest is the earlier of two times where 0 means unknown.
func earliest(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// certDir keys the state: a certificate in one direction.
type certDir [verify.CertIDLen + 1]byte

func keyOf(id verify.CertID, dir verify.Direction) certDir {
	var k certDir
	copy(k[:], id[:])
	k[verify.CertIDLen] = byte(dir)
	return k
}

// dropReason is why a peer's report (or a local one) was not taken.
type dropReason uint8

// The reasons; their names are metric labels.
const (
	dropNone            dropReason = iota
	dropUnauthenticated            // not sealed with a station key, or sealed for another group
	dropMalformed                  // authentic but not in the wire format, or its times are impossible
	dropUnknownGate                // names a gate not in the station's list
	dropFuture                     // a time further ahead of this gate's clock than the skew allows
	dropExpired                    // already outside the window (not hostile: the edge of a push/pull)
	dropFull                       // the state holds MaxEntries grants
	dropQueueFull                  // the controller's report found the send queue full
	dropBusy                       // too many peer connections being checked at once
	numDrops
)

var dropNames = [numDrops]string{"", "unauthenticated", "malformed", "unknown_gate", "future", "expired", "full", "queue_full", "busy"}

func (r dropReason) String() string {
	if r < numDrops {
		return dropNames[r]
	}
	return "unknown"
}

// DoubleUse is one certificate granted at two gates of the station while
// the first grant stood (held, or passed within the anti-passback
// window): two people may have passed on it. It is found after the fact,
// once the two gates hear of each other's grant, by both of them.
type DoubleUse struct {
	Cert verify.CertID
	Dir  verify.Direction
	// Here is this gate's grant; Gate and There the other gate's.
	Here  time.Time
	Gate  string
	There time.Time
}

type useKey struct {
	cd          certDir
	here, there int64
	gate        string
}

// Sighting is what the station's other gates know of a certificate in one
// direction: the gate that holds it (its passenger has a grant and has
// not yet passed) or that it last passed, and when.
type Sighting struct {
	Gate string
	// At is the grant (when Held) or the passage, on that gate's
	// issuer-corrected clock.
	At time.Time
	// Held: a grant at Gate still stands; its passenger may be walking
	// through now.
	Held bool
}

// state is the peer-aware anti-passback state: every grant of the
// station's gates within the window. It does no I/O and reads no clock:
// the caller passes the time. Not safe for concurrent use (Node holds a
// lock around it).
type state struct {
	self    string
	gates   map[string]bool // the station's gates, this one included
	window  int64
	maxHold int64
	skew    int64
	max     int

	byCert map[certDir][]grant
	n      int
	// last is this gate's latest grant of each certificate, for the
	// lapse and passage that follow it.
	last   map[certDir]int64
	raised map[useKey]int64 // double uses reported, until when to remember them
}

func newState(self string, gates []string, window, maxHold, skew time.Duration, maxEntries int) *state {
	s := &state{self: self, gates: map[string]bool{self: true}, window: int64(window), maxHold: int64(maxHold),
		skew: int64(skew), max: maxEntries, byCert: map[certDir][]grant{}, last: map[certDir]int64{}, raised: map[useKey]int64{}}
	for _, g := range gates {
		s.gates[g] = true
	}
	return s
}

// maxPerCert bounds the grants kept of one certificate in one direction:
// a passenger who scans and steps back again and again (each grant lapses)
// cannot grow the state, or the cost of each report, without bound. The
// oldest go first.
const maxPerCert = 64

// add appends g to the grants of cd, dropping the oldest beyond
// maxPerCert, and returns g's index.
func (s *state) add(cd certDir, g grant) int {
	list := append(s.byCert[cd], g)
	s.n++
	if len(list) > maxPerCert {
		old := 0
		for i := range list {
			if list[i].at < list[old].at {
				old = i
			}
		}
		list = slices.Delete(list, old, old+1)
		s.n--
	}
	s.byCert[cd] = list
	return find(list, g.gate, g.at)
}

// find returns the grant with g's identity in list, or -1.
func find(list []grant, gate string, at int64) int {
	for i := range list {
		if list[i].at == at && list[i].gate == gate {
			return i
		}
	}
	return -1
}

// local records this gate's own report (Hold, Release, Passed): a message
// for its peers, or false when there is nothing to tell (a lapse of a
// grant this process never saw). Double uses it reveals are appended to
// uses.
func (s *state) local(kind msgKind, id verify.CertID, dir verify.Direction, t, until int64, uses []DoubleUse) (message, bool, []DoubleUse) {
	cd := keyOf(id, dir)
	m := message{kind: kind, dir: dir, gate: s.self, cert: id}
	list := s.byCert[cd]
	var i int
	switch kind {
	case kindHold:
		m.at, m.t = t, until
		s.last[cd] = t
		if i = find(list, s.self, t); i >= 0 {
			list[i].mine = true
			list[i].merge(&grant{until: until})
		} else if i = s.add(cd, grant{cert: id, dir: dir, gate: s.self, at: t, until: until, mine: true}); i < 0 {
			return m, true, uses // older than every grant kept of it (the clock went back): tell the peers all the same
		}
	case kindRelease, kindPassed:
		at, ok := s.last[cd]
		i = -1
		if ok {
			i = find(list, s.self, at)
		}
		if i < 0 {
			if kind == kindRelease {
				return m, false, uses
			}
			// A passage whose grant this process did not see (it
			// started between the two): the passage stands for both.
			at = t
			s.last[cd] = t
			if i = s.add(cd, grant{cert: id, dir: dir, gate: s.self, at: t, mine: true}); i < 0 {
				m.at, m.t = t, t
				return m, true, uses
			}
		}
		o := grant{}
		if kind == kindRelease {
			o.released = t
		} else {
			o.passed = t
		}
		g := &s.byCert[cd][i]
		// A grant that lapses when its hold ends (the pass timeout, as
		// the hold said) tells the peers nothing new: its hold ends there
		// by itself. Only one ended early (the emergency input, the gate
		// stopping) is sent.
		silent := kind == kindRelease && g.until != 0 && t >= g.until && g.passed == 0
		g.merge(&o)
		m.at, m.t = at, t
		uses = s.checkUses(cd, i, uses)
		return m, !silent, uses
	}
	return m, true, s.checkUses(cd, i, uses)
}

// restore takes this gate's passages from before it started: each a
// grant of its own, granted and passed at its time (the grant's own time
// is not kept on the disk; the passage stands for both, as local does for
// a passage whose grant this process did not see). They are not this
// process's grants (mine false): a double use among them was the
// business of the process that made them. Those outside the window at
// now, and those beyond the state's bound, are left out.
func (s *state) restore(ps []Passage, now int64) {
	for _, p := range ps {
		t := p.At.UnixNano()
		if t <= 0 || now-t >= s.window || t > now+s.skew || s.n >= s.max || (p.Dir != verify.Entry && p.Dir != verify.Exit) {
			continue
		}
		cd := keyOf(p.Cert, p.Dir)
		if find(s.byCert[cd], s.self, t) >= 0 {
			continue
		}
		s.add(cd, grant{cert: p.Cert, dir: p.Dir, gate: s.self, at: t, passed: t})
	}
}

// fromMessage turns a peer's message into the grant it reports.
func fromMessage(m *message) grant {
	g := grant{cert: m.cert, dir: m.dir, gate: m.gate, at: m.at}
	switch m.kind {
	case kindHold:
		g.until = m.t
	case kindRelease:
		g.released = m.t
	case kindPassed:
		g.passed = m.t
	}
	return g
}

// judge says whether a peer's grant may be taken at now.
func (s *state) judge(g *grant, now int64) dropReason {
	switch {
	case !s.gates[g.gate]:
		return dropUnknownGate
	case g.at <= 0 || g.until < 0 || g.released < 0 || g.passed < 0:
		return dropMalformed
	case g.until != 0 && (g.until < g.at || g.until-g.at > s.maxHold+s.skew):
		return dropMalformed // a hold longer than any gate's pass timeout
	case g.released != 0 && g.released < g.at, g.passed != 0 && g.passed < g.at:
		return dropMalformed
	case max(g.at, g.released, g.passed) > now+s.skew, g.until > now+s.maxHold+s.skew:
		return dropFuture
	case g.horizon(s.window) < now:
		return dropExpired
	}
	return dropNone
}

// merge takes a peer's report of a grant. It returns whether the state
// changed (new information), or why the report was dropped; double uses it
// reveals are appended to uses.
func (s *state) merge(g grant, now int64, uses []DoubleUse) (bool, dropReason, []DoubleUse) {
	if r := s.judge(&g, now); r != dropNone {
		return false, r, uses
	}
	g.mine = false
	cd := keyOf(g.cert, g.dir)
	list := s.byCert[cd]
	i := find(list, g.gate, g.at)
	switch {
	case i >= 0:
		if !list[i].merge(&g) {
			return false, dropNone, uses
		}
	case s.n >= s.max:
		return false, dropFull, uses
	default:
		if i = s.add(cd, g); i < 0 {
			return false, dropNone, uses // older than every grant kept of it
		}
	}
	return true, dropNone, s.checkUses(cd, i, uses)
}

// checkUses appends to uses every double use not reported yet between the
// grant of cd at index i, which changed, and the others: a grant of this
// gate's and one of another gate's, the later made while the earlier
// stood.
func (s *state) checkUses(cd certDir, i int, uses []DoubleUse) []DoubleUse {
	list := s.byCert[cd]
	g := &list[i]
	if !g.mine && g.gate == s.self {
		return uses // this gate's own, from before it restarted
	}
	for j := range list {
		o := &list[j]
		x, y := g, o // x this gate's, y another's
		if !g.mine {
			x, y = o, g
		}
		if !x.mine || y.gate == s.self {
			continue
		}
		if !(x.at <= y.at && x.standing(y.at, s.window)) && !(y.at <= x.at && y.standing(x.at, s.window)) {
			continue
		}
		k := useKey{cd: cd, here: x.at, there: y.at, gate: y.gate}
		if _, done := s.raised[k]; done {
			continue
		}
		s.raised[k] = max(x.horizon(s.window), y.horizon(s.window))
		uses = append(uses, DoubleUse{Cert: x.cert, Dir: x.dir, Here: time.Unix(0, x.at).UTC(), Gate: y.gate, There: time.Unix(0, y.at).UTC()})
	}
	return uses
}

// seen returns what the other gates know of id in direction dir at now:
// a grant that still stands (Held), else the latest passage within the
// window. This gate's own grants are not sightings: its own passages are
// in its cache, and its own hold must not refuse its own passenger.
func (s *state) seen(id verify.CertID, dir verify.Direction, now int64) (Sighting, bool) {
	list := s.byCert[keyOf(id, dir)]
	var held, passed *grant
	for i := range list {
		g := &list[i]
		if g.gate == s.self {
			continue
		}
		switch {
		case g.passed != 0:
			if (now-g.passed < s.window || g.passed > now) && (passed == nil || g.passed > passed.passed) {
				passed = g
			}
		case g.released == 0 && now < g.until:
			if held == nil || g.at > held.at {
				held = g
			}
		}
	}
	switch {
	case held != nil:
		return Sighting{Gate: held.gate, At: time.Unix(0, held.at).UTC(), Held: true}, true
	case passed != nil:
		return Sighting{Gate: passed.gate, At: time.Unix(0, passed.passed).UTC()}, true
	}
	return Sighting{}, false
}

// prune forgets the grants past their horizon, and the double uses
// reported that can no longer recur.
func (s *state) prune(now int64) {
	for cd, list := range s.byCert {
		kept := slices.DeleteFunc(list, func(g grant) bool { return g.horizon(s.window) < now })
		s.n -= len(list) - len(kept)
		if len(kept) == 0 {
			delete(s.byCert, cd)
			delete(s.last, cd)
			continue
		}
		s.byCert[cd] = kept
	}
	for k, until := range s.raised {
		if until < now {
			delete(s.raised, k)
		}
	}
}

// snapshot returns every grant and the gates they name, for a push/pull.
func (s *state) snapshot() ([]string, []grant) {
	out := make([]grant, 0, s.n)
	seen := map[string]bool{}
	var gates []string
	for _, list := range s.byCert {
		for _, g := range list {
			if len(out) == MaxEntries {
				return gates, out // more than a peer accepts: cannot happen below 70 grants a second
			}
			if !seen[g.gate] {
				seen[g.gate] = true
				gates = append(gates, g.gate)
			}
			out = append(out, g)
		}
	}
	return gates, out
}
