package keysync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"gateagent/feed"
)

// Upload sends the gate's event log to the issuer in batches, oldest first,
// and deletes each batch only once the issuer has acknowledged it. An
// upload cut off at any point is repeated whole; the issuer stores each
// (gate, sequence) once. It returns the number of events acknowledged.
func (c *Client) Upload(ctx context.Context) (int, error) {
	if c.cfg.GateID == "" || c.cfg.Journal == nil {
		return 0, nil
	}
	total := 0
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
		body, err := json.Marshal(feed.EventUpload{GateID: c.cfg.GateID, Events: evs})
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
		if resp.StatusCode != http.StatusOK {
			return total, fmt.Errorf("keysync: upload: issuer answered %s: %s (events kept)", resp.Status, snippet(rb))
		}
		var ack feed.EventAck
		if err := json.Unmarshal(rb, &ack); err != nil {
			return total, fmt.Errorf("keysync: upload: answer is not an acknowledgement: %w (events kept)", err)
		}
		last := evs[len(evs)-1].Seq
		if ack.AckedThrough < evs[0].Seq || ack.AckedThrough > last {
			return total, fmt.Errorf("keysync: upload: issuer acknowledged through %d, sent %d to %d: not deleting", ack.AckedThrough, evs[0].Seq, last)
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
