package keysync

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"gateagent/event"
	"gateagent/feed"
)

// Upload sends the gate's event log to the issuer in batches, oldest first,
// and deletes each batch only once the issuer has acknowledged it. An
// upload cut off at any point is repeated whole; the issuer stores each
// (gate, sequence) once. When the issuer holds some of the numbers for
// other events of the gate (its journal started again), the events not yet
// uploaded are renumbered after the issuer's last (Journal.Renumber), an
// alarm says so, and the upload goes on. It returns the number of events
// acknowledged.
func (c *Client) Upload(ctx context.Context) (int, error) {
	if c.cfg.GateID == "" || c.cfg.Journal == nil {
		return 0, nil
	}
	total := 0
	renumbered := false
	for {
		// Each event's MAC is checked first: one damaged on the disk goes
		// as an alarm under its number, never as it reads.
		evs, damaged, err := c.cfg.Journal.UploadBatch(c.cfg.UploadBatch, c.cfg.Now())
		if err != nil {
			return total, fmt.Errorf("keysync: upload: %w", err)
		}
		for _, seq := range damaged {
			c.log.Error("event failed its integrity check (damaged on the disk): uploading an alarm in its place", "seq", seq)
		}
		if len(evs) == 0 {
			return total, nil
		}
		var nonce [feed.NonceLen]byte
		rand.Read(nonce[:])
		up := feed.EventUpload{GateID: c.cfg.GateID, Events: evs, Nonce: hex.EncodeToString(nonce[:])}
		body, err := json.Marshal(&up)
		if err != nil {
			return total, fmt.Errorf("keysync: upload: %w", err)
		}
		u, _ := c.base.Parse("v1/events")
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
		if err != nil {
			return total, fmt.Errorf("keysync: upload: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.cfg.HTTP.Do(req)
		if err != nil {
			return total, fmt.Errorf("keysync: upload %d events: %w (kept for the next round)", len(evs), err)
		}
		rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return total, fmt.Errorf("keysync: upload: reading the answer: %w (events kept)", err)
		}
		if resp.StatusCode == http.StatusConflict {
			if err := c.renumber(&up, rb, resp.Status, renumbered); err != nil {
				return total, err
			}
			renumbered = true
			continue
		}
		if resp.StatusCode != http.StatusOK {
			return total, fmt.Errorf("keysync: upload: issuer answered %s: %s (events kept)", resp.Status, snippet(rb))
		}
		var ack feed.EventAck
		if err := json.Unmarshal(rb, &ack); err != nil {
			return total, fmt.Errorf("keysync: upload: answer is not an acknowledgement: %w (events kept)", err)
		}
		// Events are deleted on the issuer's word only: an
		// acknowledgement a proxy or a host on the LAN made up would lose
		// them.
		if err := c.cfg.Keys.VerifyAck(&up, &ack); err != nil {
			return total, fmt.Errorf("keysync: upload: acknowledgement: %w: check the station proxy (events kept)", err)
		}
		if first, last := evs[0].Seq, evs[len(evs)-1].Seq; ack.AckedThrough < first || ack.AckedThrough > last {
			return total, fmt.Errorf("keysync: upload: issuer acknowledged through %d, sent %d to %d: not deleting", ack.AckedThrough, first, last)
		}
		n, err := c.cfg.Journal.DeleteEventsThrough(ack.AckedThrough)
		if err != nil {
			return total, fmt.Errorf("keysync: upload: %w", err)
		}
		total += n
		c.mu.Lock()
		c.uploaded += uint64(n)
		c.mu.Unlock()
	}
}

// renumber answers the issuer's 409 to up (body rb, status line status):
// a signed conflict that an issuer could send has the journal's events
// renumbered after the issuer's last, and an alarm recorded. again: this
// upload round renumbered once already, so a second conflict is another
// gate with this ID, reported rather than renumbered for.
func (c *Client) renumber(up *feed.EventUpload, rb []byte, status string, again bool) error {
	var conflict feed.EventConflict
	if err := json.Unmarshal(rb, &conflict); err != nil || conflict.Code != feed.SeqReused {
		return fmt.Errorf("keysync: upload: issuer answered %s: %s (events kept)", status, snippet(rb))
	}
	if err := c.cfg.Keys.VerifyConflict(up, &conflict); err != nil {
		return fmt.Errorf("keysync: upload: conflict answer: %w: check the station proxy (events kept)", err)
	}
	// Even signed, an answer no working issuer sends (a number outside
	// what was sent, a last number past any gate's life) renumbers
	// nothing.
	first, last := up.Events[0].Seq, up.Events[len(up.Events)-1].Seq
	if conflict.Seq < first || conflict.Seq > last || conflict.LastSeq < conflict.Seq || conflict.LastSeq >= maxSeq {
		return fmt.Errorf("keysync: upload: the issuer's conflict answer is implausible (seq %d, last %d, for %d to %d sent): check the station proxy (events kept)", conflict.Seq, conflict.LastSeq, first, last)
	}
	if again {
		return fmt.Errorf("keysync: upload: the issuer again holds other events under this gate's numbers (after renumbering): is another gate configured with gate.id %s? (events kept): %w", c.cfg.GateID, &conflict)
	}
	n, err := c.cfg.Journal.Renumber(conflict.LastSeq, c.cfg.Now())
	if err != nil {
		return fmt.Errorf("keysync: upload: %w (events kept)", err)
	}
	c.log.Warn("the issuer holds other events under this gate's sequence numbers: its journal started again (a new board, or the journal moved aside), or another gate has its ID; the events not yet uploaded are numbered after the issuer's last, so none is taken for a duplicate",
		"gate", c.cfg.GateID, "seq", conflict.Seq, "issuer_last_seq", conflict.LastSeq, "renumbered", n)
	// The station's record says so too, after the renumbered events.
	alarm := event.Event{Time: c.cfg.Now(), Kind: event.Alarm,
		Detail: fmt.Sprintf("event log started again: the issuer held numbers up to %d for this gate, so %d events not yet uploaded were numbered after it", conflict.LastSeq, n)}
	if _, err := c.cfg.Journal.AppendEvent(alarm); err != nil {
		c.log.Error("could not record the renumbering", "err", err)
	}
	return nil
}

// maxSeq bounds the sequence numbers a gate takes from an issuer's answer:
// 2^53, the largest integer every JSON reader keeps exactly, and more
// events than a gate records in its life.
const maxSeq = 1 << 53
