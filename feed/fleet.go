package feed

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The fleet key is the X25519 key pair (HPKE: DHKEM(X25519, HKDF-SHA256))
// to which an issuer seals the certificate keys of its feed. Every gate of
// the fleet holds its private part (from a systemd credential); the issuer
// holds only its public part, so a proxy or an issuer backup that has the
// feed's pages has ciphertext only. During a rotation the issuer seals to
// two fleet keys and gates hold either.
//
// A fleet key is known by an ID derived from its public key: eight bytes
// of a SHA-256, printed "fleet-" and 16 hex digits. A page names the IDs it
// is sealed to, and a gate opens it with whichever of its keys matches.

// FleetKeyIDLen is the length of a fleet key ID in a page.
const FleetKeyIDLen = 8

// FleetKeyID names a fleet key.
type FleetKeyID [FleetKeyIDLen]byte

// String is "fleet-" and 16 hex digits.
func (id FleetKeyID) String() string { return "fleet-" + hex.EncodeToString(id[:]) }

func parseFleetKeyID(s string) (FleetKeyID, bool) {
	var id FleetKeyID
	h, ok := strings.CutPrefix(s, "fleet-")
	if !ok || len(h) != 2*FleetKeyIDLen {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, false
	}
	return id, true
}

func fleetKeyIDOf(pub []byte) FleetKeyID {
	h := sha256.Sum256(append([]byte("gateagent fleet key\x00"), pub...))
	return FleetKeyID(h[:FleetKeyIDLen])
}

// fleetKEM is the fleet key's KEM; the data key is wrapped with
// HKDF-SHA256 and AES-256-GCM.
var fleetKEM = hpke.DHKEM(ecdh.X25519())

// Errors of the fleet key texts.
var (
	// ErrFleetKeyText: a fleet key (public line or private file) is not
	// in the form `issuer fleet-keygen` writes.
	ErrFleetKeyText = errors.New("not a fleet key as `issuer fleet-keygen` writes it")
)

// FleetPublic is the public part of a fleet key: what an issuer seals to.
type FleetPublic struct {
	ID  FleetKeyID
	Key hpke.PublicKey
}

// String is the line `issuer fleet-keygen` prints and `issuer serve
// --fleet-key` takes: "fleet-HEX:BASE64".
func (p FleetPublic) String() string {
	return p.ID.String() + ":" + base64.StdEncoding.EncodeToString(p.Key.Bytes())
}

// ParseFleetPublic reads "fleet-HEX:BASE64"; the ID must be the one the
// key gives (a typing error in either part is caught).
func ParseFleetPublic(s string) (FleetPublic, error) {
	idText, b64, ok := strings.Cut(strings.TrimSpace(s), ":")
	id, idOK := parseFleetKeyID(idText)
	if !ok || !idOK {
		return FleetPublic{}, fmt.Errorf("fleet key %q: %w (want fleet-HEX:BASE64)", clip(s), ErrFleetKeyText)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return FleetPublic{}, fmt.Errorf("fleet key %s: the part after the colon is not base64: %w", idText, ErrFleetKeyText)
	}
	pub, err := fleetKEM.NewPublicKey(raw)
	if err != nil {
		return FleetPublic{}, fmt.Errorf("fleet key %s: not an X25519 public key: %w", idText, ErrFleetKeyText)
	}
	if got := fleetKeyIDOf(raw); got != id {
		return FleetPublic{}, fmt.Errorf("fleet key %s: the key's own ID is %s (the line is mistyped): %w", idText, got, ErrFleetKeyText)
	}
	return FleetPublic{ID: id, Key: pub}, nil
}

// FleetKey is a fleet key's private part, as a gate holds it.
type FleetKey struct {
	ID   FleetKeyID
	priv hpke.PrivateKey
}

// GenerateFleetKey makes a new fleet key pair.
func GenerateFleetKey() (*FleetKey, error) {
	k, err := fleetKEM.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("feed: generate fleet key: %w", err)
	}
	return newFleetKey(k), nil
}

// DeriveFleetKey derives a fleet key pair from seed (RFC 9180
// DeriveKeyPair): for tests, which need the same key in every run.
func DeriveFleetKey(seed []byte) (*FleetKey, error) {
	k, err := fleetKEM.DeriveKeyPair(seed)
	if err != nil {
		return nil, fmt.Errorf("feed: derive fleet key: %w", err)
	}
	return newFleetKey(k), nil
}

func newFleetKey(k hpke.PrivateKey) *FleetKey {
	return &FleetKey{ID: fleetKeyIDOf(k.PublicKey().Bytes()), priv: k}
}

// Public returns the key's public part.
func (k *FleetKey) Public() FleetPublic { return FleetPublic{ID: k.ID, Key: k.priv.PublicKey()} }

// The private key file:
//
//	gateagent-fleet-key v1
//	fleet-HEX BASE64PRIVATE
const fleetKeyHeader = "gateagent-fleet-key v1"

// MaxFleetKeyFile bounds a fleet key file.
const MaxFleetKeyFile = 512

// MarshalText is the private key file's content. It is the secret: write
// it only to a file of mode 0600, or seal it with systemd-creds.
func (k *FleetKey) MarshalText() ([]byte, error) {
	raw, err := k.priv.Bytes()
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "%s\n%s %s\n", fleetKeyHeader, k.ID, base64.StdEncoding.EncodeToString(raw)), nil
}

// ParseFleetKey reads a private key file written by `issuer fleet-keygen`.
// Its errors never hold the key's bytes.
func ParseFleetKey(data []byte) (*FleetKey, error) {
	head, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || string(head) != fleetKeyHeader {
		return nil, fmt.Errorf("the first line is not %q: %w", fleetKeyHeader, ErrFleetKeyText)
	}
	line, rest, _ := bytes.Cut(rest, []byte("\n"))
	if len(rest) != 0 {
		return nil, fmt.Errorf("want exactly two lines: %w", ErrFleetKeyText)
	}
	idText, b64, ok := strings.Cut(string(line), " ")
	id, idOK := parseFleetKeyID(idText)
	if !ok || !idOK {
		return nil, fmt.Errorf("the second line is not fleet-HEX BASE64: %w", ErrFleetKeyText)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("the private key is not base64: %w", ErrFleetKeyText)
	}
	priv, err := fleetKEM.NewPrivateKey(raw)
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("not an X25519 private key: %w", ErrFleetKeyText)
	}
	k := newFleetKey(priv)
	if k.ID != id {
		return nil, fmt.Errorf("the file names key %s but holds key %s: %w", id, k.ID, ErrFleetKeyText)
	}
	return k, nil
}

// Fleet is the set of fleet private keys a gate holds: one, two during a
// rotation.
type Fleet struct {
	keys map[FleetKeyID]*FleetKey
}

// NewFleet builds a fleet from keys; IDs must be distinct.
func NewFleet(keys ...*FleetKey) (*Fleet, error) {
	f := &Fleet{keys: map[FleetKeyID]*FleetKey{}}
	for _, k := range keys {
		if _, dup := f.keys[k.ID]; dup {
			return nil, fmt.Errorf("fleet key %s listed twice", k.ID)
		}
		f.keys[k.ID] = k
	}
	return f, nil
}

// IDs lists the fleet's key IDs, sorted.
func (f *Fleet) IDs() []FleetKeyID {
	if f == nil {
		return nil
	}
	var ids []FleetKeyID
	for id := range f.keys {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b FleetKeyID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

// Len is the number of keys held.
func (f *Fleet) Len() int {
	if f == nil {
		return 0
	}
	return len(f.keys)
}

func (f *Fleet) key(id FleetKeyID) *FleetKey {
	if f == nil {
		return nil
	}
	return f.keys[id]
}

func idList(ids []FleetKeyID) string {
	if len(ids) == 0 {
		return "none"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}
