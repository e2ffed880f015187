// Package feed is the wire format of the key feed: the signed documents an
// issuer serves and a gate checks before it believes a single byte of them.
//
// A document is fixed-width binary, big-endian, with the Ed25519 signature
// over every byte before it at the end (format 2):
//
//	magic "GAF2"(4) | kind(1) | flags(1) | key ID length(1) | key ID(1..32)
//	epoch(8) | issuer time(8, Unix ns) | max age(4, s) | page size(4)
//	from(8) | next(8) | snapshot(8) | after(16) | nonce(16)
//	upserts(4) | revokes(4) | wraps(1)
//	wrap × w:   fleet key ID(8) | HPKE encapsulated key(32) | sealed data key(32+16)
//	upsert × n: cert ID(16) | not_before(8, Unix s) | not_after(8, Unix s) | status(1) | sealed key(32+16)
//	revoke × n: cert ID(16)
//	signature(64)
//
// Certificate keys are sealed to the gate fleet: a page carries one random
// 32-byte data key, wrapped with HPKE (DHKEM(X25519), HKDF-SHA256,
// AES-256-GCM) to each fleet public key the issuer holds (one; two during a
// rotation), and each upsert's key sealed with AES-256-GCM under the data
// key, its nonce the record's index in the page, its associated data the
// cert ID. One public-key operation per page, whatever its records. The
// page stays one byte string for every gate (a station proxy caches it as
// before) and holds ciphertext only; IDs, validity and revocations stay
// readable, and the signature covers the ciphertext.
//
// Fixed widths make the size of a document a function of its three counts,
// so the gate checks the length, then the signature, then parses by
// slicing: no varints, no field tags, no allocation per record but the
// certificate itself. An upsert is 81 bytes; JSON with hex or base64 keys
// would be twice that and many times slower to parse on a small ARM core,
// and neither random keys nor ciphertext compress.
//
// There are three kinds of document. A log page holds the changes numbered
// (From, Next]; a snapshot page holds certificates in ID order, as of the
// feed's position Snapshot, after the ID After; a head tells where the feed
// is now and echoes the gate's nonce, so that its issuer time can set the
// gate's clock and cannot be replayed.
package feed

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
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
	magic = "GAF2"
	// magicV1 began the documents of format 1, whose keys were in plaintext.
	magicV1     = "GAF1"
	MaxKeyIDLen = 32
	// MaxRecords bounds the records of one document, so that a document
	// is at most about 5.3 MB.
	MaxRecords = 65536
	// MaxWraps bounds the fleet keys a page is sealed to.
	MaxWraps = 4
	// SealedKeyLen is a certificate key sealed with AES-256-GCM: the key
	// and its 16-byte tag.
	SealedKeyLen = verify.KeyLen + 16
	UpsertLen    = verify.CertIDLen + 8 + 8 + 1 + SealedKeyLen
	RevokeLen    = verify.CertIDLen
	// WrapLen is the data key wrapped to one fleet key: its ID, HPKE's
	// encapsulated key, and the data key sealed with its tag.
	WrapLen  = FleetKeyIDLen + 32 + dataKeyLen + 16
	SigLen   = ed25519.SignatureSize
	NonceLen = 16
	// fixed is the header after the key ID.
	fixed = 8 + 8 + 4 + 4 + 8 + 8 + 8 + verify.CertIDLen + NonceLen + 4 + 4 + 1
	// MaxDocLen is the largest document this format allows.
	MaxDocLen = 7 + MaxKeyIDLen + fixed + MaxWraps*WrapLen + MaxRecords*UpsertLen + SigLen

	dataKeyLen = 32
	flagFinal  = 1 << 0
)

// hpkeInfo binds the wrapped data key to this format.
var hpkeInfo = []byte("gateagent feed v2 data key")

// recordAAD begins each sealed key's associated data, the cert ID follows.
const recordAAD = "gateagent feed v2 cert key\x00"

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
	// ErrVersion: a document of format 1, whose certificate keys were in
	// plaintext; this gate reads only sealed pages.
	ErrVersion = errors.New("feed document is of format 1 (certificate keys in plaintext): this gate reads format 2 (keys sealed to the fleet); update the issuer")
	// ErrFleetKey: a page's keys are sealed to fleet keys this gate does
	// not hold. The error is a *FleetKeyError naming both sides' IDs.
	ErrFleetKey = errors.New("feed page is sealed to fleet keys this gate does not hold")
	// ErrSealed: a signed page's data key or a record's sealed key does
	// not open: it was sealed wrongly or to another key under this ID.
	ErrSealed = errors.New("a sealed key in the feed page does not open")
)

// FleetKeyError is ErrFleetKey with the IDs on both sides.
type FleetKeyError struct {
	// Page is what the page is sealed to; Held is what the gate holds.
	Page, Held []FleetKeyID
}

func (e *FleetKeyError) Error() string {
	return fmt.Sprintf("%v: the page is sealed to %s, the gate holds %s", ErrFleetKey, idList(e.Page), idList(e.Held))
}

// Is makes errors.Is(err, ErrFleetKey) true.
func (e *FleetKeyError) Is(target error) bool { return target == ErrFleetKey }

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

// Sign encodes d with s's key ID, seals its certificate keys to the fleet
// keys given (at least one when d holds upserts; at most MaxWraps) and
// signs it. d.KeyID is ignored. Each call draws a new data key, so two
// signings of one document differ; an issuer serves a page as first signed.
func (s *Signer) Sign(d *Doc, fleet []FleetPublic) ([]byte, error) {
	if d.Records() > MaxRecords {
		return nil, fmt.Errorf("feed: %d records, at most %d in one document", d.Records(), MaxRecords)
	}
	if d.Kind < KindLog || d.Kind > KindHead {
		return nil, fmt.Errorf("feed: unknown document kind %d", d.Kind)
	}
	if d.MaxAge < 0 || d.MaxAge/time.Second > math.MaxUint32 {
		return nil, fmt.Errorf("feed: max age %v out of range", d.MaxAge)
	}
	if len(d.Upserts) == 0 {
		fleet = nil // nothing to seal
	}
	switch {
	case len(d.Upserts) > 0 && len(fleet) == 0:
		return nil, errors.New("feed: no fleet public key to seal the certificate keys to (issuer serve --fleet-key)")
	case len(fleet) > MaxWraps:
		return nil, fmt.Errorf("feed: %d fleet keys, at most %d", len(fleet), MaxWraps)
	}
	n := 7 + len(s.KeyID) + fixed + len(fleet)*WrapLen + len(d.Upserts)*UpsertLen + len(d.Revokes)*RevokeLen
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
	b = append(b, byte(len(fleet)))
	var aead cipher.AEAD
	if len(d.Upserts) > 0 {
		var dk [dataKeyLen]byte
		rand.Read(dk[:])
		seen := map[FleetKeyID]bool{}
		for _, fk := range fleet {
			if seen[fk.ID] {
				return nil, fmt.Errorf("feed: fleet key %s given twice", fk.ID)
			}
			seen[fk.ID] = true
			w, err := hpke.Seal(fk.Key, hpke.HKDFSHA256(), hpke.AES256GCM(), hpkeInfo, dk[:])
			if err != nil {
				return nil, fmt.Errorf("feed: seal the data key to %s: %w", fk.ID, err)
			}
			if len(w) != WrapLen-FleetKeyIDLen {
				return nil, fmt.Errorf("feed: fleet key %s: wrapped data key of %d bytes, want %d (not an X25519 key?)", fk.ID, len(w), WrapLen-FleetKeyIDLen)
			}
			b = append(b, fk.ID[:]...)
			b = append(b, w...)
		}
		var err error
		if aead, err = newAEAD(dk[:]); err != nil {
			return nil, err
		}
		clear(dk[:])
	}
	nonce, aad := make([]byte, 12), []byte(recordAAD+string(make([]byte, verify.CertIDLen)))
	for i := range d.Upserts {
		c := &d.Upserts[i]
		b = append(b, c.ID[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(c.NotBefore.Unix()))
		b = binary.BigEndian.AppendUint64(b, uint64(c.NotAfter.Unix()))
		st := byte(StatusValid)
		if c.Revoked {
			st = StatusRevoked
		}
		b = append(b, st)
		recordNonce(nonce, i)
		copy(aad[len(recordAAD):], c.ID[:])
		b = aead.Seal(b, nonce, c.Key[:], aad)
	}
	for i := range d.Revokes {
		b = append(b, d.Revokes[i][:]...)
	}
	return append(b, ed25519.Sign(s.Key, b)...), nil
}

// recordNonce is the nonce of upsert i: its index, unique within the page,
// and the page's data key is its own.
func recordNonce(nonce []byte, i int) {
	clear(nonce[:4])
	binary.BigEndian.PutUint64(nonce[4:], uint64(i))
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
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
// only then parses its records and opens their sealed keys with whichever
// key of fleet the page is sealed to (fleet may be nil for a head, which
// holds no keys). Any failure is an error and returns no document.
func Open(data []byte, keys Keyring, fleet *Fleet) (*Doc, error) {
	if len(data) > MaxDocLen {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFormat, len(data), MaxDocLen)
	}
	if len(data) >= 4 && string(data[:4]) == magicV1 {
		return nil, ErrVersion
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
	nUp := binary.BigEndian.Uint32(h[fixed-9:])
	nRev := binary.BigEndian.Uint32(h[fixed-5:])
	nWrap := int(h[fixed-1])
	if uint64(nUp)+uint64(nRev) > MaxRecords {
		return nil, fmt.Errorf("%w: %d records, at most %d", ErrFormat, uint64(nUp)+uint64(nRev), MaxRecords)
	}
	if nWrap > MaxWraps {
		return nil, fmt.Errorf("%w: sealed to %d fleet keys, at most %d", ErrFormat, nWrap, MaxWraps)
	}
	want := hl + nWrap*WrapLen + int(nUp)*UpsertLen + int(nRev)*RevokeLen + SigLen
	if len(data) != want {
		return nil, fmt.Errorf("%w: %d bytes, but its counts (%d fleet keys, %d upserts, %d revokes) make %d: truncated or padded", ErrFormat, len(data), nWrap, nUp, nRev, want)
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
	if nUp > 0 && nWrap == 0 || nUp == 0 && nWrap > 0 {
		return nil, fmt.Errorf("%w: %d upserts sealed to %d fleet keys", ErrFormat, nUp, nWrap)
	}
	wraps := r[:nWrap*WrapLen]
	r = r[nWrap*WrapLen:]
	var aead cipher.AEAD
	if nUp > 0 {
		var err error
		if aead, err = openDataKey(wraps, fleet); err != nil {
			return nil, err
		}
		d.Upserts = make([]verify.Cert, nUp)
	}
	nonce, aad := make([]byte, 12), []byte(recordAAD+string(make([]byte, verify.CertIDLen)))
	for i := range d.Upserts {
		c := &d.Upserts[i]
		copy(c.ID[:], r)
		c.NotBefore = time.Unix(int64(binary.BigEndian.Uint64(r[16:])), 0).UTC()
		c.NotAfter = time.Unix(int64(binary.BigEndian.Uint64(r[24:])), 0).UTC()
		switch r[32] {
		case StatusValid:
		case StatusRevoked:
			c.Revoked = true
		default:
			return nil, fmt.Errorf("%w: upsert %d (cert %s): unknown status %d", ErrFormat, i, c.ID, r[32])
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
		recordNonce(nonce, i)
		copy(aad[len(recordAAD):], c.ID[:])
		// The key opens straight into the certificate: no copy of it is
		// left anywhere else.
		if _, err := aead.Open(c.Key[:0], nonce, r[33:UpsertLen], aad); err != nil {
			return nil, fmt.Errorf("%w: upsert %d (cert %s): its key is not sealed for this cert ID in this page", ErrSealed, i, c.ID)
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

// openDataKey finds the wrap sealed to a fleet key the gate holds and
// opens the page's data key with it (the one public-key operation of a
// page).
func openDataKey(wraps []byte, fleet *Fleet) (cipher.AEAD, error) {
	var ids []FleetKeyID
	for w := wraps; len(w) > 0; w = w[WrapLen:] {
		id := FleetKeyID(w[:FleetKeyIDLen])
		if slices.Contains(ids, id) {
			return nil, fmt.Errorf("%w: sealed to fleet key %s twice", ErrFormat, id)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		k := fleet.key(id)
		if k == nil {
			continue
		}
		w := wraps[i*WrapLen+FleetKeyIDLen : (i+1)*WrapLen]
		dk, err := hpke.Open(k.priv, hpke.HKDFSHA256(), hpke.AES256GCM(), hpkeInfo, w)
		if err != nil || len(dk) != dataKeyLen {
			return nil, fmt.Errorf("%w: the page's data key does not open with fleet key %s", ErrSealed, id)
		}
		aead, err := newAEAD(dk)
		clear(dk)
		return aead, err
	}
	return nil, &FleetKeyError{Page: ids, Held: fleet.IDs()}
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
