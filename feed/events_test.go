package feed_test

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"gateagent/event"
	"gateagent/feed"
	"gateagent/feed/feedtest"
)

// An upload's answer signed by the issuer s, as a gate checks it.
func signedAck(b *testing.B, s *feed.Signer) (feed.Keyring, *feed.EventUpload, *feed.EventAck) {
	up := &feed.EventUpload{GateID: "GZN-E07", Nonce: strings.Repeat("ab", feed.NonceLen),
		Events: []event.Event{{Seq: 1, Time: time.Unix(1e9, 0), Kind: event.Alarm}}}
	ack := &feed.EventAck{Stored: 500, AckedThrough: 500}
	s.SignAck(up, ack)
	return feedtest.Keyring(b, s), up, ack
}

// BenchmarkVerifyAck: what checking the issuer's answer costs a gate once
// per upload batch, beside its floor, BenchmarkVerifyAckFloor (the bare
// Ed25519 check of a message of the same length).
func BenchmarkVerifyAck(b *testing.B) {
	keys, up, ack := signedAck(b, feedtest.Signer(b, "test-1", 1))
	for b.Loop() {
		if err := keys.VerifyAck(up, ack); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyAckFloor(b *testing.B) {
	s := feedtest.Signer(b, "test-1", 1)
	msg := make([]byte, len("gateagent events answer v1\x00")+1+len("GZN-E07")+1+2*feed.NonceLen+1+24)
	pub, sig := s.Public().Key, ed25519.Sign(s.Key, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("no")
		}
	}
}
