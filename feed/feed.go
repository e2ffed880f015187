// Package feed is the wire format of the key feed: the signed documents an
// issuer serves and a gate checks before it believes a single byte of them.
//
// A document is fixed-width binary, big-endian, with the Ed25519 signature
// over every byte before it at the end:
//
//	magic "GAF1"(4) | kind(1) | flags(1) | key ID length(1) | key ID(1..32)
//	epoch(8) | issuer time(8, Unix ns) | max age(4, s) | page size(4)
//	from(8) | next(8) | snapshot(8) | after(16) | nonce(16)
//	upserts(4) | revokes(4)
//	upsert × n: cert ID(16) | key(32) | not_before(8, Unix s) | not_after(8, Unix s) | status(1)
//	revoke × n: cert ID(16)
//	signature(64)
//
// Fixed widths make the size of a document a function of its two counts, so
// the gate checks the length, then the signature, then parses by slicing:
// no varints, no field tags, no allocation per record but the certificate
// itself. An upsert is 65 bytes; JSON with hex or base64 keys would be more
// than twice that and many times slower to parse on a small ARM core, and
// the random keys do not compress.
//
// There are three kinds of document. A log page holds the changes numbered
// (From, Next]; a snapshot page holds certificates in ID order, as of the
// feed's position Snapshot, after the ID After; a head tells where the feed
// is now and echoes the gate's nonce, so that its issuer time can set the
// gate's clock and cannot be replayed.
package feed

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"gateagent/verify"
)

// Kind says what a document holds.
type Kind uint8

// The kinds of document.
const (
	KindLog      Kind = 1
	KindSnapshot Kind = 2
	KindHead     Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindLog:
		return "log"
	case KindSnapshot:
		return "snapshot"
	case KindHead:
		return "head"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Status of a certificate in an upsert.
const (
	StatusValid   = 1
	StatusRevoked = 2
)

// Sizes and limits of the format.
const (
	magic       = "GAF1"
	MaxKeyIDLen = 32
	// MaxRecords bounds the records of one document, so that a document
	// is at most about 4.3 MB.
	MaxRecords = 65536
	UpsertLen  = verify.CertIDLen + verify.KeyLen + 8 + 8 + 1
	RevokeLen  = verify.CertIDLen
	SigLen     = ed25519.SignatureSize
	NonceLen   = 16
	// fixed is the header after the key ID.
	fixed = 8 + 8 + 4 + 4 + 8 + 8 + 8 + verify.CertIDLen + NonceLen + 4 + 4
	// MaxDocLen is the largest document this format allows.
	MaxDocLen = 7 + MaxKeyIDLen + fixed + MaxRecords*UpsertLen + SigLen

	flagFinal = 1 << 0
)

// Doc is one feed document.
type Doc struct {
	Kind Kind
	// Final marks the last page of a snapshot.
	Final bool
	// KeyID names the issuer key that signed the document.
	KeyID string
	// Epoch identifies the issuer's feed: cursors of two epochs cannot be
	// compared, and a gate that meets a new epoch resyncs.
	Epoch uint64
	// IssuerTime is the issuer's clock when it made the document.
	IssuerTime time.Time
	// MaxAge is how old a gate's cache may grow before it is stale.
	MaxAge time.Duration
	// PageSize is the number of changes in a full log page.
	PageSize uint32
	// From and Next: a log page holds changes (From, Next]; a head has
	// both at the feed's last change.
	From, Next uint64
	// Snapshot is the feed position a snapshot page reflects; in a head,
	// the position of the snapshot a resyncing gate should take.
	Snapshot uint64
	// After is the ID a snapshot page follows (zero for the first page).
	After verify.CertID
	// Nonce echoes the gate's nonce in a head; zero elsewhere.
	Nonce [NonceLen]byte
	// Upserts and Revokes are the records.
	Upserts []verify.Cert
	Revokes []verify.CertID
}

// Records is the number of records in d.
func (d *Doc) Records() int { return len(d.Upserts) + len(d.Revokes) }

// Errors of Open, wrapped with detail.
var (
	ErrFormat     = errors.New("feed document is malformed")
	ErrUnknownKey = errors.New("feed document is signed by a key this gate does not trust: add the issuer's new public key to the gate's trusted keys")
	ErrSignature  = errors.New("feed document signature is not valid: the document was altered or not made by the issuer")
)

// Signer signs documents with one issuer key.
type Signer struct {
	KeyID string
	Key   ed25519.PrivateKey
}

// NewSigner checks the key ID and key.
func NewSigner(keyID string, key ed25519.PrivateKey) (*Signer, error) {
	if err := checkKeyID(keyID); err != nil {
		return nil, err
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("feed: signing key of %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	return &Signer{KeyID: keyID, Key: key}, nil
}

// Public returns the trusted-key line a gate's config needs for s.
func (s *Signer) Public() TrustedKey {
	return TrustedKey{ID: s.KeyID, Key: s.Key.Public().(ed25519.PublicKey)}
}

// Sign encodes d with s's key ID and signs it. d.KeyID is ignored.
func (s *Signer) Sign(d *Doc) ([]byte, error) {
	if d.Records() > MaxRecords {
		return nil, fmt.Errorf("feed: %d records, at most %d in one document", d.Records(), MaxRecords)
	}
	if d.Kind < KindLog || d.Kind > KindHead {
		return nil, fmt.Errorf("feed: unknown document kind %d", d.Kind)
	}
	if d.MaxAge < 0 || d.MaxAge/time.Second > math.MaxUint32 {
		return nil, fmt.Errorf("feed: max age %v out of range", d.MaxAge)
	}
	n := 7 + len(s.KeyID) + fixed + len(d.Upserts)*UpsertLen + len(d.Revokes)*RevokeLen
	b := make([]byte, 0, n+SigLen)
	b = append(b, magic...)
	var flags byte
	if d.Final {
		flags |= flagFinal
	}
	b = append(b, byte(d.Kind), flags, byte(len(s.KeyID)))
	b = append(b, s.KeyID...)
	b = binary.BigEndian.AppendUint64(b, d.Epoch)
	b = binary.BigEndian.AppendUint64(b, uint64(d.IssuerTime.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, uint32(d.MaxAge/time.Second))
	b = binary.BigEndian.AppendUint32(b, d.PageSize)
	b = binary.BigEndian.AppendUint64(b, d.From)
	b = binary.BigEndian.AppendUint64(b, d.Next)
	b = binary.BigEndian.AppendUint64(b, d.Snapshot)
	b = append(b, d.After[:]...)
	b = append(b, d.Nonce[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(d.Upserts)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(d.Revokes)))
	for i := range d.Upserts {
		c := &d.Upserts[i]
		b = append(b, c.ID[:]...)
		b = append(b, c.Key[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(c.NotBefore.Unix()))
		b = binary.BigEndian.AppendUint64(b, uint64(c.NotAfter.Unix()))
		st := byte(StatusValid)
		if c.Revoked {
			st = StatusRevoked
		}
		b = append(b, st)
	}
	for i := range d.Revokes {
		b = append(b, d.Revokes[i][:]...)
	}
	return append(b, ed25519.Sign(s.Key, b)...), nil
}

// Keyring is the set of issuer keys a gate trusts, by key ID. It holds two
// during a key rotation.
type Keyring map[string]ed25519.PublicKey

// TrustedKey is one issuer public key, written "ID:BASE64" in configs.
type TrustedKey struct {
	ID  string
	Key ed25519.PublicKey
}

func (k TrustedKey) String() string {
	return k.ID + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// ParseTrustedKey parses "ID:BASE64" as printed by `issuer keygen`.
func ParseTrustedKey(s string) (TrustedKey, error) {
	id, b64, ok := bytes.Cut([]byte(s), []byte(":"))
	if !ok {
		return TrustedKey{}, fmt.Errorf("trusted key %q: want KEYID:BASE64 as printed by `issuer keygen`", clip(s))
	}
	if err := checkKeyID(string(id)); err != nil {
		return TrustedKey{}, err
	}
	key, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil || len(key) != ed25519.PublicKeySize {
		return TrustedKey{}, fmt.Errorf("trusted key %q: the part after the colon must be a base64 Ed25519 public key of %d bytes", string(id), ed25519.PublicKeySize)
	}
	return TrustedKey{ID: string(id), Key: key}, nil
}

// NewKeyring builds a keyring; key IDs must be distinct.
func NewKeyring(keys ...TrustedKey) (Keyring, error) {
	kr := Keyring{}
	for _, k := range keys {
		if _, dup := kr[k.ID]; dup {
			return nil, fmt.Errorf("trusted key ID %q listed twice", k.ID)
		}
		kr[k.ID] = k.Key
	}
	return kr, nil
}

func checkKeyID(id string) error {
	if len(id) == 0 || len(id) > MaxKeyIDLen {
		return fmt.Errorf("key ID %q: 1 to %d characters", clip(id), MaxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("key ID %q: only letters, digits, '-', '_' and '.'", clip(id))
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Open checks a document's length and signature against the keyring, and
// only then parses its records. Any failure is an error and returns no
// document.
func Open(data []byte, keys Keyring) (*Doc, error) {
	if len(data) > MaxDocLen {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFormat, len(data), MaxDocLen)
	}
	if len(data) < 7 || string(data[:4]) != magic {
		return nil, fmt.Errorf("%w: does not start with %q (is the feed URL right?)", ErrFormat, magic)
	}
	k := int(data[6])
	hl := 7 + k + fixed
	if k == 0 || k > MaxKeyIDLen || len(data) < hl+SigLen {
		return nil, fmt.Errorf("%w: truncated header (%d bytes)", ErrFormat, len(data))
	}
	keyID := string(data[7 : 7+k])
	h := data[7+k:]
	nUp := binary.BigEndian.Uint32(h[fixed-8:])
	nRev := binary.BigEndian.Uint32(h[fixed-4:])
	if uint64(nUp)+uint64(nRev) > MaxRecords {
		return nil, fmt.Errorf("%w: %d records, at most %d", ErrFormat, uint64(nUp)+uint64(nRev), MaxRecords)
	}
	want := hl + int(nUp)*UpsertLen + int(nRev)*RevokeLen + SigLen
	if len(data) != want {
		return nil, fmt.Errorf("%w: %d bytes, but its counts (%d upserts, %d revokes) make %d: truncated or padded", ErrFormat, len(data), nUp, nRev, want)
	}
	pub, ok := keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w (key ID %q)", ErrUnknownKey, clip(keyID))
	}
	body := data[:len(data)-SigLen]
	if !ed25519.Verify(pub, body, data[len(body):]) {
		return nil, fmt.Errorf("%w (key ID %q)", ErrSignature, keyID)
	}
	// Signed by a trusted key: now parse.
	d := &Doc{Kind: Kind(data[4]), Final: data[5]&flagFinal != 0, KeyID: keyID}
	if d.Kind < KindLog || d.Kind > KindHead {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrFormat, data[4])
	}
	if data[5]&^flagFinal != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrFormat, data[5])
	}
	d.Epoch = binary.BigEndian.Uint64(h)
	d.IssuerTime = time.Unix(0, int64(binary.BigEndian.Uint64(h[8:]))).UTC()
	d.MaxAge = time.Duration(binary.BigEndian.Uint32(h[16:])) * time.Second
	d.PageSize = binary.BigEndian.Uint32(h[20:])
	d.From = binary.BigEndian.Uint64(h[24:])
	d.Next = binary.BigEndian.Uint64(h[32:])
	d.Snapshot = binary.BigEndian.Uint64(h[40:])
	copy(d.After[:], h[48:])
	copy(d.Nonce[:], h[64:])
	if err := d.checkShape(nUp, nRev); err != nil {
		return nil, err
	}
	r := data[hl:]
	if nUp > 0 {
		d.Upserts = make([]verify.Cert, nUp)
	}
	for i := range d.Upserts {
		c := &d.Upserts[i]
		copy(c.ID[:], r)
		copy(c.Key[:], r[16:])
		c.NotBefore = time.Unix(int64(binary.BigEndian.Uint64(r[48:])), 0).UTC()
		c.NotAfter = time.Unix(int64(binary.BigEndian.Uint64(r[56:])), 0).UTC()
		switch r[64] {
		case StatusValid:
		case StatusRevoked:
			c.Revoked = true
		default:
			return nil, fmt.Errorf("%w: upsert %d (cert %s): unknown status %d", ErrFormat, i, c.ID, r[64])
		}
		if d.Kind == KindSnapshot {
			prev := d.After
			if i > 0 {
				prev = d.Upserts[i-1].ID
			}
			if bytes.Compare(c.ID[:], prev[:]) <= 0 {
				return nil, fmt.Errorf("%w: snapshot upsert %d (cert %s) is not in ascending ID order", ErrFormat, i, c.ID)
			}
		}
		r = r[UpsertLen:]
	}
	if nRev > 0 {
		d.Revokes = make([]verify.CertID, nRev)
	}
	for i := range d.Revokes {
		copy(d.Revokes[i][:], r)
		r = r[RevokeLen:]
	}
	return d, nil
}

// checkShape checks what each kind requires of the header and counts.
func (d *Doc) checkShape(nUp, nRev uint32) error {
	n := uint64(nUp) + uint64(nRev)
	switch d.Kind {
	case KindLog:
		if d.Next < d.From || d.Next-d.From != n {
			return fmt.Errorf("%w: log page (%d, %d] holds %d records", ErrFormat, d.From, d.Next, n)
		}
	case KindSnapshot:
		if nRev != 0 {
			return fmt.Errorf("%w: a snapshot page holds revocations as upserts, found %d revokes", ErrFormat, nRev)
		}
	case KindHead:
		if n != 0 || d.From != d.Next {
			return fmt.Errorf("%w: a head holds no records", ErrFormat)
		}
	}
	if d.PageSize == 0 || d.PageSize > MaxRecords {
		return fmt.Errorf("%w: page size %d, want 1 to %d", ErrFormat, d.PageSize, MaxRecords)
	}
	return nil
}
