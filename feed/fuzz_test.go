package feed_test

import (
	"reflect"
	"testing"
	"time"

	"gateagent/feed"
	"gateagent/feed/feedtest"
)

// FuzzOpen: arbitrary bytes give an error or, only for an untouched signed
// document, the document itself; never a panic.
func FuzzOpen(f *testing.F) {
	s := signer(f, "k1", 1)
	kr := keyring(f, s)
	fleet := feedtest.Fleet(f)
	docs := []*feed.Doc{logDoc(), {Kind: feed.KindHead, PageSize: 1, IssuerTime: time.Unix(1_800_000_000, 0).UTC()}}
	for _, d := range docs {
		f.Add(sign(f, s, d))
	}
	f.Add(feedtest.SignV1(s, logDoc()))
	f.Add([]byte("GAF2"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := feed.Open(data, kr, fleet)
		if err != nil {
			if d != nil {
				t.Fatal("error with a document")
			}
			return
		}
		// The signature covers every byte and each page draws its own
		// data key, so the bytes differ from run to run: what must hold
		// is that anything accepted is what the signer signed.
		for _, want := range docs {
			w := *want
			w.KeyID = s.KeyID
			if reflect.DeepEqual(d, &w) {
				return
			}
		}
		t.Fatalf("accepted a document its signer did not make: %+v", d)
	})
}
