package feed

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
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
	// Nonce is the gate's fresh random value for this upload (NonceLen
	// bytes, hex): the issuer signs its answer over it, so that no
	// answer can be replayed or made up by a proxy.
	Nonce string `json:"nonce,omitempty"`
}

// EventAck is the issuer's answer: every event up to AckedThrough is stored
// and the gate may delete it.
type EventAck struct {
	Stored       int    `json:"stored"`
	Duplicates   int    `json:"duplicates"`
	AckedThrough uint64 `json:"acked_through"`
	// KeyID and Sig: the issuer's signature with its feed key over the
	// answer, the gate ID and the upload's nonce (SignAck), when the
	// upload had a nonce.
	KeyID string `json:"key_id,omitempty"`
	Sig   []byte `json:"sig,omitempty"`
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
	// KeyID and Sig: as in EventAck (SignConflict).
	KeyID string `json:"key_id,omitempty"`
	Sig   []byte `json:"sig,omitempty"`
}

func (c *EventConflict) Error() string {
	return fmt.Sprintf("%s: %s (issuer's last sequence number %d)", c.Code, c.Message, c.LastSeq)
}

// ErrAnswer: an answer to an upload that is not signed by a trusted feed
// key for that upload. The gate deletes nothing on it.
var ErrAnswer = errors.New("answer to the upload not signed by a trusted feed key for it")

// answerDomain begins every signed answer to an upload: a signature over
// one can never pass for a feed document's (which begin with the feed's
// magic) or for another kind of answer.
const answerDomain = "gateagent events answer v1\x00"

// answerMessage is what the issuer signs for an answer of kind to up: the
// gate ID, the upload's nonce and the answer's numbers.
func answerMessage(up *EventUpload, kind byte, a, b, c uint64) []byte {
	m := make([]byte, 0, len(answerDomain)+1+len(up.GateID)+1+len(up.Nonce)+1+24)
	m = append(m, answerDomain...)
	m = append(m, byte(len(up.GateID)))
	m = append(m, up.GateID...)
	m = append(m, byte(len(up.Nonce)))
	m = append(m, up.Nonce...)
	m = append(m, kind)
	for _, v := range []uint64{a, b, c} {
		m = binary.BigEndian.AppendUint64(m, v)
	}
	return m
}

func ackMessage(up *EventUpload, a *EventAck) []byte {
	return answerMessage(up, 'A', uint64(a.Stored), uint64(a.Duplicates), a.AckedThrough)
}

func conflictMessage(up *EventUpload, c *EventConflict) []byte {
	return answerMessage(up, 'C', c.Seq, c.LastSeq, 0)
}

// SignAck signs ack as the answer to up.
func (s *Signer) SignAck(up *EventUpload, ack *EventAck) {
	ack.KeyID, ack.Sig = s.KeyID, ed25519.Sign(s.Key, ackMessage(up, ack))
}

// SignConflict signs c as the answer to up.
func (s *Signer) SignConflict(up *EventUpload, c *EventConflict) {
	c.KeyID, c.Sig = s.KeyID, ed25519.Sign(s.Key, conflictMessage(up, c))
}

// VerifyAck checks that ack is the answer a key of k signed to up.
func (k Keyring) VerifyAck(up *EventUpload, ack *EventAck) error {
	return k.verifyAnswer(ack.KeyID, ack.Sig, ackMessage(up, ack))
}

// VerifyConflict checks that c is the answer a key of k signed to up.
func (k Keyring) VerifyConflict(up *EventUpload, c *EventConflict) error {
	return k.verifyAnswer(c.KeyID, c.Sig, conflictMessage(up, c))
}

func (k Keyring) verifyAnswer(keyID string, sig, msg []byte) error {
	pub, ok := k[keyID]
	switch {
	case keyID == "" || len(sig) == 0:
		return fmt.Errorf("%w: unsigned", ErrAnswer)
	case !ok:
		return fmt.Errorf("%w: signed with key %q, which this gate does not trust", ErrAnswer, clip(keyID))
	case len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, msg, sig):
		return fmt.Errorf("%w: the signature does not match this upload and answer", ErrAnswer)
	}
	return nil
}
