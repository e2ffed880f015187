package issuer

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"gateagent/event"
	"gateagent/feed"
)

func checkGateID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("gate_id must be 1 to 64 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("gate_id may hold only letters, digits, '-', '_' and '.'")
		}
	}
	return nil
}

func uploadKey(gate string, seq uint64) []byte {
	k := append([]byte(gate), 0)
	return append(k, u64(seq)...)
}

// StoreEvents stores a gate's events, each once by (gate, seq).
func (is *Issuer) StoreEvents(up *feed.EventUpload) (feed.EventAck, error) {
	var ack feed.EventAck
	if err := checkGateID(up.GateID); err != nil {
		return ack, &Refusal{Code: "bad_gate_id", Message: err.Error()}
	}
	if n := up.Nonce; n != "" {
		if b, err := hex.DecodeString(n); err != nil || len(b) != feed.NonceLen {
			return ack, &Refusal{Code: "bad_nonce", Message: fmt.Sprintf("nonce must be %d bytes in hex", feed.NonceLen)}
		}
	}
	if len(up.Events) > feed.MaxUploadEvents {
		return ack, &Refusal{Code: "too_many_events", Message: fmt.Sprintf("%d events, at most %d in one upload", len(up.Events), feed.MaxUploadEvents)}
	}
	for i := range up.Events {
		if up.Events[i].Seq == 0 || i > 0 && up.Events[i].Seq <= up.Events[i-1].Seq {
			return ack, &Refusal{Code: "bad_sequence", Message: fmt.Sprintf("event %d: sequence numbers must be positive and ascending", i)}
		}
	}
	err := is.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUploads)
		for i := range up.Events {
			k := uploadKey(up.GateID, up.Events[i].Seq)
			if old := b.Get(k); old != nil {
				// A retry sends the same event again (the gate encodes it
				// from its journal each time); what was stored is read
				// back and compared field by field, so a retry across an
				// upgrade, or from a gate whose time zone changed, is one
				// too.
				if sameEvent(old, &up.Events[i]) {
					ack.Duplicates++
					continue
				}
				return &feed.EventConflict{Code: feed.SeqReused, Seq: up.Events[i].Seq, LastSeq: lastSeq(b, up.GateID),
					Message: fmt.Sprintf("sequence number %d is held for another event of gate %s: its journal started again (a new board, or the journal moved aside), or another gate has its ID; nothing of this upload is stored: number the events after the last one held", up.Events[i].Seq, up.GateID)}
			}
			v, err := json.Marshal(&up.Events[i])
			if err != nil {
				return err
			}
			if err := b.Put(k, v); err != nil {
				return err
			}
			ack.Stored++
		}
		return nil
	})
	var conflict *feed.EventConflict
	if errors.As(err, &conflict) {
		is.opt.Logger.Warn("events upload refused: sequence numbers used again", "gate", up.GateID, "seq", conflict.Seq, "last_seq", conflict.LastSeq)
		return feed.EventAck{}, err
	}
	if err != nil {
		return feed.EventAck{}, fmt.Errorf("issuer: store events of gate %s: %w", up.GateID, err)
	}
	if n := len(up.Events); n > 0 {
		ack.AckedThrough = up.Events[n-1].Seq
	}
	return ack, nil
}

// sameEvent reports whether the stored event old is e.
func sameEvent(old []byte, e *event.Event) bool {
	var stored event.Event
	return json.Unmarshal(old, &stored) == nil && stored.Same(e)
}

// lastSeq is the highest sequence number b holds for gate (0: none).
func lastSeq(b *bolt.Bucket, gate string) uint64 {
	prefix := append([]byte(gate), 0)
	c := b.Cursor()
	k, _ := c.Seek(uploadKey(gate, ^uint64(0)))
	if k == nil || !bytes.Equal(k, uploadKey(gate, ^uint64(0))) {
		k, _ = c.Prev()
	}
	if len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(prefix):])
}

// GateEvents returns the stored events of one gate, for tests and audits.
func (is *Issuer) GateEvents(gate string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := is.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(gate), 0)
		c := tx.Bucket(bucketUploads).Cursor()
		for k, v := c.Seek(prefix); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			out = append(out, json.RawMessage(append([]byte(nil), v...)))
		}
		return nil
	})
	return out, err
}

// EventList is one page of a gate's stored events, oldest first: the
// answer of GET /v1/events?gate=ID. More says that events after the last
// one are stored too (ask again with after = its seq).
type EventList struct {
	GateID string        `json:"gate_id"`
	Events []event.Event `json:"events"`
	More   bool          `json:"more"`
}

// Limits of a page of ListEvents.
const (
	DefaultEventPage = 500
	MaxEventPage     = feed.MaxUploadEvents
)

// ListEvents returns up to limit events of gate with a sequence number
// above after, oldest first (limit 0: DefaultEventPage). Reading only.
func (is *Issuer) ListEvents(gate string, after uint64, limit int) (EventList, error) {
	l := EventList{GateID: gate, Events: []event.Event{}}
	if err := checkGateID(gate); err != nil {
		return l, &Refusal{Code: "bad_gate_id", Message: err.Error()}
	}
	switch {
	case limit == 0:
		limit = DefaultEventPage
	case limit < 0 || limit > MaxEventPage:
		return l, &Refusal{Code: "bad_limit", Message: fmt.Sprintf("limit must be 1 to %d", MaxEventPage)}
	}
	err := is.db.View(func(tx *bolt.Tx) error {
		if after == ^uint64(0) {
			return nil // nothing comes after the last number
		}
		prefix := append([]byte(gate), 0)
		c := tx.Bucket(bucketUploads).Cursor()
		for k, v := c.Seek(uploadKey(gate, after+1)); k != nil && len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(l.Events) == limit {
				l.More = true
				break
			}
			var e event.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k[len(prefix):]), err)
			}
			l.Events = append(l.Events, e)
		}
		return nil
	})
	if err != nil {
		return EventList{}, fmt.Errorf("issuer: events of gate %s: %w", gate, err)
	}
	return l, nil
}

// serveListEvents answers GET /v1/events?gate=ID[&after=SEQ][&limit=N].
func (is *Issuer) serveListEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var (
		after uint64
		limit int
		err   error
	)
	if s := q.Get("after"); s != "" {
		if after, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeErr(w, http.StatusBadRequest, "bad_after", "after must be a sequence number")
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 {
			writeErr(w, http.StatusBadRequest, "bad_limit", "limit must be 1 to %d", MaxEventPage)
			return
		}
	}
	l, err := is.ListEvents(q.Get("gate"), after, limit)
	var ref *Refusal
	switch {
	case errors.As(err, &ref):
		writeJSON(w, http.StatusBadRequest, ref)
	case err != nil:
		is.opt.Logger.Error("events", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal", "the issuer could not read the events: see its log")
	default:
		writeJSON(w, http.StatusOK, l)
	}
}

func (is *Issuer) serveEvents(w http.ResponseWriter, r *http.Request) {
	var up feed.EventUpload
	if !readJSON(w, r, 4<<20, &up) {
		return
	}
	ack, err := is.StoreEvents(&up)
	var ref *Refusal
	var conflict *feed.EventConflict
	// The answers a gate acts on are signed over its nonce: it deletes
	// events, or renumbers them, only on the issuer's word.
	if errors.As(err, &conflict) {
		if up.Nonce != "" {
			is.opt.Signer.SignConflict(&up, conflict)
		}
		writeJSON(w, http.StatusConflict, conflict)
		return
	}
	if errors.As(err, &ref) {
		writeJSON(w, http.StatusUnprocessableEntity, ref)
		return
	}
	if err != nil {
		is.opt.Logger.Error("events", "err", err)
		writeErr(w, http.StatusInternalServerError, "internal", "the issuer could not store the events: retry")
		return
	}
	is.opt.Logger.Info("events uploaded", "gate", up.GateID, "stored", ack.Stored, "duplicates", ack.Duplicates, "through", ack.AckedThrough)
	if up.Nonce != "" {
		is.opt.Signer.SignAck(&up, &ack)
	}
	writeJSON(w, http.StatusOK, ack)
}
