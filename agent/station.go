package agent

import (
	"context"
	"fmt"
	"time"

	"gateagent/config"
	"gateagent/event"
	"gateagent/station"
	"gateagent/verify"
)

// peerStore is the verifier's store with the station's other gates in it:
// the cache's record, with what the peers know of the certificate folded
// in (verify.Record.Sighted). Check 10 then refuses a certificate held or
// passed at any gate of the group, and the decision names the gate.
type peerStore struct {
	verify.Store
	peers *station.Node
}

func (s peerStore) Lookup(id verify.CertID, dir verify.Direction) (verify.Record, bool, error) {
	r, found, err := s.Store.Lookup(id, dir)
	if err != nil || !found {
		return r, found, err
	}
	if sg, ok := s.peers.Seen(id, dir); ok {
		r = r.Sighted(sg.Gate, sg.At, sg.Held)
	}
	return r, true, nil
}

// openStation starts the gate's station peer node, when the config has a
// group: its keys read from station.key_files, its clock the gate's
// corrected one.
func (a *Agent) openStation() error {
	cfg := a.cfg
	if !cfg.Station.On() {
		return nil
	}
	keys, err := station.LoadKeys(cfg.Station.KeyFiles)
	if err != nil {
		return &StartError{Step: "station", Key: "station.key_files", Err: err}
	}
	sc := cfg.StationConfig(keys, a.feed.Now, a.log.With("part", "station"), a.recordDoubleUse)
	sc.Transport = a.opts.StationTransport
	// This gate's own passages within the window go to the peers with
	// its first push/pull: a station restarted at once forgets none.
	for _, p := range a.store.Journal.Passages(a.feed.Now().Add(-cfg.Verify.PassbackWindow)) {
		sc.Passages = append(sc.Passages, station.Passage{Cert: p.Cert, Dir: p.Dir, At: p.At})
	}
	if a.station, err = station.Start(sc); err != nil {
		return &StartError{Step: "station", Key: "station.bind", Err: err}
	}
	return nil
}

// recordDoubleUse writes a double use this gate was part of to the event
// log, from which it is uploaded like every event.
func (a *Agent) recordDoubleUse(u station.DoubleUse) {
	gap := u.There.Sub(u.Here)
	when := fmt.Sprintf("%s after", gap.Round(time.Millisecond))
	if gap < 0 {
		when = fmt.Sprintf("%s before", (-gap).Round(time.Millisecond))
	}
	detail := fmt.Sprintf("also granted at gate %s %s this gate's grant of %s, while one grant stood", u.Gate, when, u.Here.UTC().Format("15:04:05.000Z"))
	if len(detail) > event.MaxDetail {
		detail = fmt.Sprintf("also granted at gate %s while this gate's grant stood", u.Gate)[:min(event.MaxDetail, len(detail))]
	}
	ev := event.Event{Time: a.feed.Now(), Kind: event.DoubleUse, Direction: u.Dir, CertID: u.Cert, Detail: detail}
	if _, err := a.store.Journal.AppendEvent(ev); err != nil {
		a.log.Error("double use not recorded: check the disk and run gateagent diag", "cert", u.Cert, "gate", u.Gate, "err", err)
	}
}

// awaitStation waits until the station node has pulled its peers' state
// or given up (its join timeout), and warns when it runs without them.
func (a *Agent) awaitStation(ctx context.Context) {
	if a.station == nil {
		return
	}
	select {
	case <-a.station.Ready():
	case <-ctx.Done():
		return
	}
	if a.station.Synced() || len(a.cfg.Station.Gates) < 2 {
		return
	}
	a.log.Warn("no station peer reachable: the gate runs on its own and refuses only what it saw itself until a peer answers",
		"group", a.cfg.Station.Group)
}

// stationStatus is the metrics' source of the station's status; nil
// without a group.
func (a *Agent) stationStatus() func() station.Status {
	if a.station == nil {
		return nil
	}
	return a.station.Status
}

// Station is the gate's station peer node (nil without a [station]
// group).
func (a *Agent) Station() *station.Node { return a.station }

// stationFindings is run --check's view of the [station] section: the key
// files read as the agent reads them.
func stationFindings(cfg *config.Config) []Finding {
	if !cfg.Station.On() {
		return nil
	}
	if _, err := station.LoadKeys(cfg.Station.KeyFiles); err != nil {
		return []Finding{{Key: "station.key_files", Problem: true, Err: err}}
	}
	return []Finding{{Key: "station", Note: fmt.Sprintf("group %s: %d gates, %d seeds, key file(s) readable by this user only",
		cfg.Station.Group, len(cfg.Station.Gates), len(cfg.Station.Seeds))}}
}
