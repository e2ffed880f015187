package feed

import "gateagent/event"

// EventUpload is the JSON body a gate posts to /v1/events: a run of its
// event log in sequence order. The issuer stores each event once by
// (gate ID, sequence number), so a retried upload stores nothing twice.
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
