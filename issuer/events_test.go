package issuer_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"gateagent/event"
	"gateagent/feed"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/verify"
)

// getEvents asks GET /v1/events with query q and decodes the answer.
func getEvents(t *testing.T, url, q string) (int, issuer.EventList, string) {
	t.Helper()
	resp, err := http.Get(url + "v1/events?" + q)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	var l issuer.EventList
	json.Unmarshal(raw, &l)
	return resp.StatusCode, l, string(raw)
}

// TestListEvents: a gate's uploaded events, read back page by page as the
// issuer stores them; an event without a certificate has no cert_id, and
// one an older gate uploaded with "000…0" reads as the same zero ID.
func TestListEvents(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{})
	c := client{t, s.URL}
	at := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	cert := verify.CertID{9, 9, 9}
	up := feed.EventUpload{GateID: "GZN-E07", Events: []event.Event{
		{Seq: 1, Time: at, Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry, CertID: cert},
		{Seq: 2, Time: at.Add(8 * time.Second), Kind: event.Lapsed, Reason: verify.OK, Direction: verify.Entry, CertID: cert, Detail: "granted but not used"},
		{Seq: 3, Time: at.Add(time.Minute), Kind: event.Decision, Reason: verify.Malformed, Direction: verify.Entry},
		{Seq: 5, Time: at.Add(2 * time.Minute), Kind: event.Technician, Reason: verify.OK, Direction: verify.Entry, Detail: "relay test: 500ms pulse"},
	}}
	if code := c.post("v1/events", up, nil); code != http.StatusOK {
		t.Fatalf("upload: %d", code)
	}
	// An older gate's upload, its cert_id spelt out as zeros.
	old := `{"gate_id":"GZN-E07","events":[{"seq":7,"time":"2026-11-23T08:03:00Z","kind":1,"reason":"MALFORMED","direction":1,"cert_id":"00000000000000000000000000000000","step_offset":0}]}`
	resp, err := http.Post(s.URL+"v1/events", "application/json", strings.NewReader(old))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("older gate's upload: %v %v", resp.Status, err)
	}
	resp.Body.Close()

	code, l, raw := getEvents(t, s.URL, "gate=GZN-E07")
	if code != 200 || l.GateID != "GZN-E07" || len(l.Events) != 5 || l.More {
		t.Fatalf("list: %d %s", code, raw)
	}
	for i, seq := range []uint64{1, 2, 3, 5, 7} {
		if l.Events[i].Seq != seq {
			t.Errorf("event %d is number %d, want %d", i, l.Events[i].Seq, seq)
		}
	}
	if l.Events[1] != up.Events[1] || l.Events[3] != up.Events[3] {
		t.Errorf("events not read back as uploaded: %+v", l.Events)
	}
	if l.Events[4].CertID != (verify.CertID{}) || strings.Count(raw, `"cert_id"`) != 2 {
		t.Errorf("events without a certificate carry a cert_id: %s", raw)
	}

	// Pages.
	code, l, raw = getEvents(t, s.URL, "gate=GZN-E07&limit=2")
	if code != 200 || len(l.Events) != 2 || !l.More || l.Events[1].Seq != 2 {
		t.Fatalf("first page: %d %s", code, raw)
	}
	code, l, raw = getEvents(t, s.URL, "gate=GZN-E07&after=2&limit=2")
	if code != 200 || len(l.Events) != 2 || !l.More || l.Events[0].Seq != 3 || l.Events[1].Seq != 5 {
		t.Fatalf("second page: %d %s", code, raw)
	}
	code, l, raw = getEvents(t, s.URL, "gate=GZN-E07&after=5&limit=2")
	if code != 200 || len(l.Events) != 1 || l.More {
		t.Fatalf("last page: %d %s", code, raw)
	}
	code, l, raw = getEvents(t, s.URL, fmt.Sprintf("gate=GZN-E07&after=%d", ^uint64(0)))
	if code != 200 || len(l.Events) != 0 || !strings.Contains(raw, `"events":[]`) {
		t.Fatalf("after the last number: %d %s", code, raw)
	}
	// Another gate, whose ID the first one's begins with: nothing of the first.
	if code, l, raw = getEvents(t, s.URL, "gate=GZN-E0"); code != 200 || len(l.Events) != 0 {
		t.Fatalf("another gate: %d %s", code, raw)
	}
	for _, q := range []string{"", "gate=a/b", "gate=G&limit=0", "gate=G&limit=x", fmt.Sprintf("gate=G&limit=%d", issuer.MaxEventPage+1), "gate=G&after=-1"} {
		if code, _, raw := getEvents(t, s.URL, q); code != http.StatusBadRequest || !strings.Contains(raw, `"error"`) {
			t.Errorf("?%s: %d %s, want 400 with the refusal", q, code, raw)
		}
	}
	var ref *issuer.Refusal
	if _, err := s.ListEvents("G", 0, -1); !errors.As(err, &ref) {
		t.Errorf("ListEvents with limit -1: %v, want a refusal", err)
	}
}

// TestUploadAnswersSigned: an upload with a nonce gets an answer signed
// over it, which the gate's keyring accepts for that upload only; a nonce
// that is not 16 bytes in hex is refused with what to send, storing
// nothing.
func TestUploadAnswersSigned(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{})
	keys, err := feed.NewKeyring(s.Opts.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	up := feed.EventUpload{GateID: "GZN-E07", Nonce: strings.Repeat("ab", feed.NonceLen),
		Events: []event.Event{{Seq: 1, Time: at, Kind: event.Alarm, Detail: "signed"}}}
	var ack feed.EventAck
	if code := (client{t, s.URL}).post("v1/events", up, &ack); code != http.StatusOK {
		t.Fatalf("upload: %d", code)
	}
	if err := keys.VerifyAck(&up, &ack); err != nil {
		t.Fatalf("the issuer's answer: %v", err)
	}
	other := up
	other.Nonce = strings.Repeat("cd", feed.NonceLen)
	if err := keys.VerifyAck(&other, &ack); !errors.Is(err, feed.ErrAnswer) {
		t.Fatalf("the answer checked against another upload's nonce: %v, want ErrAnswer", err)
	}
	for _, nonce := range []string{"zz", strings.Repeat("ab", feed.NonceLen+1), strings.Repeat("g", 2*feed.NonceLen)} {
		bad := feed.EventUpload{GateID: "GZN-E08", Nonce: nonce, Events: up.Events}
		var ref issuer.Refusal
		if code := (client{t, s.URL}).post("v1/events", bad, &ref); code != http.StatusUnprocessableEntity || ref.Code != "bad_nonce" || !strings.Contains(ref.Message, "16 bytes in hex") {
			t.Fatalf("nonce %q: %d %+v", nonce, code, ref)
		}
	}
	if raw, _ := s.GateEvents("GZN-E08"); len(raw) != 0 {
		t.Fatalf("a refused upload stored %d events", len(raw))
	}
}
