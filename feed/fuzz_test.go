package feed_test

import (
	"bytes"
	"testing"

	"gateagent/feed"
)

// FuzzOpen: arbitrary bytes give an error or, only for an untouched signed
// document, the document itself; never a panic.
func FuzzOpen(f *testing.F) {
	s := signer(f, "k1", 1)
	kr := keyring(f, s)
	for _, d := range []*feed.Doc{logDoc(), {Kind: feed.KindHead, PageSize: 1}} {
		b, err := s.Sign(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("GAF1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := feed.Open(data, kr)
		if err != nil {
			if d != nil {
				t.Fatal("error with a document")
			}
			return
		}
		again, err := s.Sign(d)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted a document its signer would not have made: %v", err)
		}
	})
}
