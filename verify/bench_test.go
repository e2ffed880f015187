package verify_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/verify"
	"gateagent/verify/memstore"
)

const (
	certs1M     = 1_000_000
	benchTokens = 1 << 16 // spread over the file, so lookups miss the CPU caches as a gate's do
)

var bench1M struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// file1M builds the 1M-certificate cache file once per run of the test
// binary; TestMain removes it.
func file1M(b *testing.B) string {
	bench1M.once.Do(func() {
		bench1M.dir, bench1M.err = os.MkdirTemp("", "gateagent-bench-")
		if bench1M.err != nil {
			return
		}
		bench1M.path = filepath.Join(bench1M.dir, "cache1M.db")
		c, err := cache.Open(bench1M.path, cachetest.Options(nil))
		if err != nil {
			bench1M.err = err
			return
		}
		// A full sync, in ID order: the certificates in a run, as a
		// gate holds them.
		var after verify.CertID
		for from := uint64(0); from < certs1M && err == nil; from += 10_000 {
			bt := cachetest.Batch(from, from+10_000, certs1M)
			_, err = c.ApplySnapshot(&cache.SnapshotPage{Epoch: 1, Snapshot: certs1M, After: after, Upserts: bt.Upserts, Final: from+10_000 >= certs1M, Feed: bt.Feed})
			after = bt.Upserts[len(bt.Upserts)-1].ID
		}
		if cerr := c.Close(); err == nil {
			err = cerr
		}
		bench1M.err = err
	})
	if bench1M.err != nil {
		b.Fatal(bench1M.err)
	}
	// Whichever benchmark builds the file must not time the collection of
	// the garbage that building it left: start each from a clean heap.
	runtime.GC()
	return bench1M.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench1M.dir != "" {
		os.RemoveAll(bench1M.dir)
	}
	os.Exit(code)
}

// benchCerts are the certificates of the last benchSet, by ID.
var benchCerts map[verify.CertID]verify.Cert

func benchCertOf(id verify.CertID) verify.Cert { return benchCerts[id] }

// benchNow lies inside every synthetic certificate's validity.
var benchNow = cachetest.Epoch.Add(6 * time.Hour)

// benchSet returns tokens of random certificates of the file, valid at benchNow.
func benchSet() (texts [][]byte, toks []verify.Token) {
	r := rand.New(rand.NewPCG(7, 11))
	benchCerts = map[verify.CertID]verify.Cert{}
	for range benchTokens {
		c := cachetest.Cert(r.Uint64N(certs1M), certs1M)
		benchCerts[c.ID] = c
		tok := verify.NewToken(&c.Key, c.ID, verify.StepOf(benchNow))
		texts = append(texts, []byte(tok.String()))
		toks = append(toks, tok)
	}
	return texts, toks
}

// BenchmarkVerify1M: the verifier's whole decision on a valid token, against
// a cache file of 1,000,000 certificates.
func BenchmarkVerify1M(b *testing.B) {
	texts, _ := benchSet()
	path := file1M(b)
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Checked(); err != nil { // the gate's steady state: its certificates checked
		b.Fatal(err)
	}
	v, err := verify.New(verify.Config{
		Store:        c,
		Clock:        verify.ClockFunc(func() time.Time { return benchNow }),
		Policy:       verify.DefaultPolicy(verify.Entry),
		TrustedAfter: cachetest.Epoch.Add(-24 * time.Hour),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cachetest.CPUTime(b)
	for i := 0; i < b.N; i++ {
		d, err := v.Verify(texts[i%len(texts)])
		if err != nil || d.Reason != verify.OK {
			b.Fatalf("%v, %v", d.Reason, err)
		}
	}
	cpu()
}

// BenchmarkFloor1M: the floor of BenchmarkVerify1M before keys were
// sealed, on the same file and tokens. One raw bbolt point read of the
// cert (a Seek to its group in the run, the read every lookup makes),
// one HMAC-SHA256 (the same ComputeTag the verifier calls) keyed with 32
// bytes of what it read, and a constant-time compare; nothing else. (The
// bytes are sealed, so the tag never matches: the cost is the same.)
func BenchmarkFloor1M(b *testing.B) {
	_, toks := benchSet()
	path := file1M(b)
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoStatistics: true, ReadOnly: true}) // as the cache opens it
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	name, key := []byte("groups"), runKey(b, db)
	matched := 0
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cachetest.CPUTime(b)
	for i := 0; i < b.N; i++ {
		tok := &toks[i%len(toks)]
		db.View(func(tx *bolt.Tx) error {
			copy(key[8:], tok.CertID[:])
			_, v := tx.Bucket(name).Cursor().Seek(key)
			tag := verify.ComputeTag((*verify.Key)(v[30:62]), &tok.CertID, tok.Step)
			matched += subtle.ConstantTimeCompare(tag[:], tok.Tag[:])
			return nil
		})
	}
	cpu()
	if matched != 0 {
		b.Fatal("a tag matched: the floor no longer reads what it should")
	}
}

// runKey returns a key of the file's run (its number, then room for an
// ID): what a lookup seeks.
func runKey(b *testing.B, db *bolt.DB) []byte {
	key := make([]byte, 8+verify.CertIDLen)
	db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket([]byte("groups")).Cursor().First()
		if k == nil {
			b.Fatal("no run in the file")
		}
		copy(key, k[:8])
		return nil
	})
	return key
}

// sealedFloorAAD is the length of the associated data the cache opens a
// key with: a label (24), the cert ID (16), flags and validity (17).
const sealedFloorAAD = 24 + verify.CertIDLen + 17

// BenchmarkFloorSealed1M: the floor of BenchmarkVerify1M with sealed
// keys, on the same file and tokens: one raw bbolt Get of the cert, one
// AES-256-GCM open of a 32-byte key (its 16-byte tag, associated data of
// the cache's length), one HMAC-SHA256 with the key opened, and a
// constant-time compare; nothing else. The sealed keys are the floor's
// own (under a key of its own, prepared before the timing): what it
// measures is the work, not the cache's code.
func BenchmarkFloorSealed1M(b *testing.B) {
	_, toks := benchSet()
	path := file1M(b)
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoStatistics: true, ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	blk, _ := aes.NewCipher(make([]byte, 32))
	aead, _ := cipher.NewGCM(blk)
	type sealed struct {
		nonce [12]byte
		ct    [verify.KeyLen + 16]byte
		aad   [sealedFloorAAD]byte
	}
	prep := make([]sealed, len(toks))
	r := rand.New(rand.NewPCG(3, 5))
	for i := range toks {
		c := benchCertOf(toks[i].CertID)
		binary.BigEndian.PutUint64(prep[i].nonce[4:], r.Uint64())
		copy(prep[i].aad[24:], c.ID[:])
		aead.Seal(prep[i].ct[:0], prep[i].nonce[:], c.Key[:], prep[i].aad[:])
	}
	name, rkey := []byte("groups"), runKey(b, db)
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cachetest.CPUTime(b)
	var key [verify.KeyLen]byte
	for i := 0; i < b.N; i++ {
		tok := &toks[i%len(toks)]
		p := &prep[i%len(toks)]
		ok := false
		db.View(func(tx *bolt.Tx) error {
			copy(rkey[8:], tok.CertID[:])
			if k, _ := tx.Bucket(name).Cursor().Seek(rkey); k == nil {
				return nil
			}
			if _, err := aead.Open(key[:0], p.nonce[:], p.ct[:], p.aad[:]); err != nil {
				return nil
			}
			tag := verify.ComputeTag((*verify.Key)(&key), &tok.CertID, tok.Step)
			ok = subtle.ConstantTimeCompare(tag[:], tok.Tag[:]) == 1
			return nil
		})
		if !ok {
			b.Fatal("tag mismatch")
		}
	}
	cpu()
}

// BenchmarkVerifyMem is the verifier on the in-memory store: its own cost
// without bbolt.
func BenchmarkVerifyMem(b *testing.B) {
	c := cachetest.Cert(1, 2)
	v, err := verify.New(verify.Config{
		Store:        memstore.New(c),
		Clock:        verify.ClockFunc(func() time.Time { return benchNow }),
		Policy:       verify.DefaultPolicy(verify.Entry),
		TrustedAfter: cachetest.Epoch.Add(-24 * time.Hour),
	})
	if err != nil {
		b.Fatal(err)
	}
	text := []byte(verify.NewToken(&c.Key, c.ID, verify.StepOf(benchNow)).String())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d, _ := v.Verify(text); d.Reason != verify.OK {
			b.Fatal(d.Reason)
		}
	}
}

// BenchmarkComputeTag is the verifier's HMAC-SHA256 of one token, beside
// BenchmarkFloorHMAC, the same with crypto/hmac.
func BenchmarkComputeTag(b *testing.B) {
	var key verify.Key
	var id verify.CertID
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		verify.ComputeTag(&key, &id, uint32(i))
	}
}

// BenchmarkFloorHMAC is crypto/hmac's HMAC-SHA256 of one token message.
func BenchmarkFloorHMAC(b *testing.B) {
	key := make([]byte, 32)
	msg := make([]byte, 23)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m := hmac.New(sha256.New, key)
		m.Write(msg)
		m.Sum(nil)
	}
}
