package feed

import (
	"fmt"

	"gateagent/event"
)

// EventUpload is the JSON body a gate posts to /v1/events: a run of its
// event log in sequence order. The issuer stores each event once by
// (gate ID, sequence number), so a retried upload stores nothing twice.
// A number it already holds for another event of the gate is not a retry
// but a number used again: it then stores nothing of the upload and
// answers 409 Conflict with an EventConflict.
type EventUpload struct {
	GateID string        `json:"gate_id"`
	Events []event.Event `json:"events"`
}

// EventAck is the issuer's answer: every event up to AckedThrough is stored
// and the gate may delete it.
type EventAck struct {
	Stored       int    `json:"stored"`
	Duplicates   int    `json:"duplicates"`
	AckedThrough uint64 `json:"acked_through"`
}

// MaxUploadEvents bounds one upload.
const MaxUploadEvents = 5000

// SeqReused is the error code of an EventConflict.
const SeqReused = "sequence_reused"

// EventConflict is the issuer's answer (409 Conflict) to an upload that
// gives a sequence number the issuer already holds for another event of
// the gate: the gate's journal started again (a new board, or its journal
// moved aside) or another gate has its ID. Taking the event for a
// duplicate would lose it, so nothing of the upload is stored; the gate
// numbers its events after LastSeq and uploads them again.
type EventConflict struct {
	Code    string `json:"error"` // SeqReused
	Message string `json:"message"`
	// Seq is the first number of the upload the issuer holds for another
	// event.
	Seq uint64 `json:"seq"`
	// LastSeq is the highest sequence number the issuer holds for the
	// gate.
	LastSeq uint64 `json:"last_seq"`
}

func (c *EventConflict) Error() string {
	return fmt.Sprintf("%s: %s (issuer's last sequence number %d)", c.Code, c.Message, c.LastSeq)
}
