package issuer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// The issuer's state is one bbolt file:
//
//	meta    "epoch" → feed epoch (8); "head" → last log sequence (8);
//	        "pruned" → log pruned through this sequence (8)
//	certs   cert ID → seq(8) | revoke seq(8) | not_before(8) | not_after(8) | key(32)
//	holders cert ID → JSON holder (name, document, city): never in the feed
//	persons doc number | not_before(8) | cert ID → empty: history, monthly count, renewal
//	log     seq(8) → kind(1) | cert ID(16) | time(8, Unix ns)
//	uploads gate ID | 0 | seq(8) → event JSON, idempotent by (gate, seq)
var (
	bucketMeta    = []byte("meta")
	bucketCerts   = []byte("certs")
	bucketHolders = []byte("holders")
	bucketPersons = []byte("persons")
	bucketLog     = []byte("log")
	bucketUploads = []byte("uploads")
	allBuckets    = [][]byte{bucketMeta, bucketCerts, bucketHolders, bucketPersons, bucketLog, bucketUploads}

	keyEpoch  = []byte("epoch")
	keyHead   = []byte("head")
	keyPruned = []byte("pruned")
)

const (
	certLen  = 8 + 8 + 8 + 8 + verify.KeyLen
	logLen   = 1 + verify.CertIDLen + 8
	logIssue = 1
	logRevok = 2
)

// stored is a certificate as the issuer keeps it.
type stored struct {
	verify.Cert
	Seq, RevokeSeq uint64
}

func encodeCert(s *stored) []byte {
	v := make([]byte, certLen)
	binary.BigEndian.PutUint64(v, s.Seq)
	binary.BigEndian.PutUint64(v[8:], s.RevokeSeq)
	binary.BigEndian.PutUint64(v[16:], uint64(s.NotBefore.Unix()))
	binary.BigEndian.PutUint64(v[24:], uint64(s.NotAfter.Unix()))
	copy(v[32:], s.Key[:])
	return v
}

func decodeCert(id, v []byte, s *stored) error {
	if len(v) != certLen || len(id) != verify.CertIDLen {
		return fmt.Errorf("issuer: damaged certificate record of %x: %d bytes", id, len(v))
	}
	copy(s.ID[:], id)
	s.Seq = binary.BigEndian.Uint64(v)
	s.RevokeSeq = binary.BigEndian.Uint64(v[8:])
	s.NotBefore = time.Unix(int64(binary.BigEndian.Uint64(v[16:])), 0).UTC()
	s.NotAfter = time.Unix(int64(binary.BigEndian.Uint64(v[24:])), 0).UTC()
	copy(s.Key[:], v[32:])
	s.Revoked = s.RevokeSeq != 0
	return nil
}

func logEntry(kind byte, id verify.CertID, at time.Time) []byte {
	v := make([]byte, logLen)
	v[0] = kind
	copy(v[1:], id[:])
	binary.BigEndian.PutUint64(v[17:], uint64(at.UnixNano()))
	return v
}

func personKey(doc string, nb time.Time, id verify.CertID) []byte {
	k := make([]byte, 0, len(doc)+8+verify.CertIDLen)
	k = append(k, doc...)
	k = binary.BigEndian.AppendUint64(k, uint64(nb.Unix()))
	return append(k, id[:]...)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// Holder is who a certificate was issued to. It never leaves the issuer.
type Holder struct {
	Name      string    `json:"name"`
	DocType   string    `json:"doc_type"`
	DocNumber string    `json:"doc_number"`
	City      string    `json:"city"`
	AppliedAt time.Time `json:"applied_at"`
}

// personCerts returns the certificates of one document number with
// not_before at or after since, oldest first.
func personCerts(tx *bolt.Tx, doc string, since time.Time) ([]stored, error) {
	var out []stored
	prefix := []byte(doc)
	c := tx.Bucket(bucketPersons).Cursor()
	start := append(bytes.Clone(prefix), u64(uint64(max(since.Unix(), 0)))...)
	certs := tx.Bucket(bucketCerts)
	for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8+verify.CertIDLen; k, _ = c.Next() {
		id := k[len(prefix)+8:]
		var s stored
		if err := decodeCert(id, certs.Get(id), &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

var errNotFound = errors.New("not found")

func getCert(tx *bolt.Tx, id verify.CertID) (stored, error) {
	var s stored
	v := tx.Bucket(bucketCerts).Get(id[:])
	if v == nil {
		return s, errNotFound
	}
	return s, decodeCert(id[:], v, &s)
}

func getHolder(tx *bolt.Tx, id verify.CertID) (Holder, error) {
	var h Holder
	v := tx.Bucket(bucketHolders).Get(id[:])
	if v == nil {
		return h, nil
	}
	return h, json.Unmarshal(v, &h)
}
