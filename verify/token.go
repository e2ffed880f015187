package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"gateagent/internal/base45"
)

// Sizes of the TR1 token, from tr1-token.md.
const (
	Prefix    = "TR1:"
	TokenLen  = len(Prefix) + bodyText // 58 characters
	StepLen   = 60 * time.Second       // a token's lifetime on the phone
	bodyLen   = CertIDLen + 4 + TagLen // 36 bytes
	bodyText  = bodyLen / 2 * 3        // 54 base45 characters
	CertIDLen = 16
	KeyLen    = 32
	TagLen    = 16
)

// CertID is a certificate's 16-byte random identifier: the only identity
// that travels in a QR code, and the only one a gate ever stores or logs.
type CertID [CertIDLen]byte

// String returns the ID in lower-case hex.
func (id CertID) String() string { return hex.EncodeToString(id[:]) }

// MarshalText encodes the ID as lower-case hex.
func (id CertID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes a 32-digit hex ID.
func (id *CertID) UnmarshalText(b []byte) error {
	p, err := ParseCertID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ParseCertID decodes a certificate ID written as 32 hex digits.
func ParseCertID(s string) (CertID, error) {
	var id CertID
	if len(s) != 2*CertIDLen {
		return id, fmt.Errorf("cert ID %q: want %d hex digits, got %d characters", truncate(s), 2*CertIDLen, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("cert ID %q: %w", truncate(s), err)
	}
	return id, nil
}

// Key is a certificate's 32-byte HMAC-SHA256 secret. Its String method
// never reveals it.
type Key [KeyLen]byte

// String returns a placeholder, so that a key printed by mistake leaks nothing.
func (Key) String() string { return "[secret]" }

// GoString returns the same placeholder for %#v.
func (Key) GoString() string { return "[secret]" }

// ParseKey decodes a key written as 64 hex digits.
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != 2*KeyLen {
		return k, fmt.Errorf("key: want %d hex digits, got %d characters", 2*KeyLen, len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("key: %w", err)
	}
	return k, nil
}

// Token is a decoded TR1 token.
type Token struct {
	CertID CertID
	Step   uint32
	Tag    [TagLen]byte
}

// StepOf returns the TR1 step of t: the number of whole minutes since the
// Unix epoch. Times before the epoch give step 0.
func StepOf(t time.Time) uint32 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return uint32(s / 60)
}

// StepStart returns the first instant of step s.
func StepStart(s uint32) time.Time { return time.Unix(int64(s)*60, 0).UTC() }

// ComputeTag returns the first 16 bytes of HMAC-SHA256(key, "TR1" || id || step).
//
// It is HMAC as RFC 2104 defines it, written over sha256.Sum256 with
// buffers on the stack: crypto/hmac goes through the hash.Hash interface,
// which costs seven heap allocations per scan (the key, the message and the
// sum escape). The tests hold it to crypto/hmac on random keys and steps.
func ComputeTag(key *Key, id *CertID, step uint32) [TagLen]byte {
	const block = 64 // SHA-256's block size
	var inner [block + 3 + CertIDLen + 4]byte
	var outer [block + sha256.Size]byte
	for i := range block {
		var k byte
		if i < KeyLen {
			k = key[i]
		}
		inner[i] = k ^ 0x36
		outer[i] = k ^ 0x5c
	}
	copy(inner[block:], "TR1")
	copy(inner[block+3:], id[:])
	binary.BigEndian.PutUint32(inner[block+3+CertIDLen:], step)
	ih := sha256.Sum256(inner[:])
	copy(outer[block:], ih[:])
	oh := sha256.Sum256(outer[:])
	var tag [TagLen]byte
	copy(tag[:], oh[:TagLen])
	return tag
}

// NewToken returns the token that the holder of key shows during step.
func NewToken(key *Key, id CertID, step uint32) Token {
	return Token{CertID: id, Step: step, Tag: ComputeTag(key, &id, step)}
}

// AppendText appends the token's 58-character text to b.
func (t Token) AppendText(b []byte) ([]byte, error) {
	var body [bodyLen]byte
	t.putBody(&body)
	b = append(b, Prefix...)
	n := len(b)
	b = append(b, make([]byte, bodyText)...)
	base45.Encode(b[n:], body[:])
	return b, nil
}

// String returns the token's 58-character text.
func (t Token) String() string {
	b, _ := t.AppendText(make([]byte, 0, TokenLen))
	return string(b)
}

func (t *Token) putBody(body *[bodyLen]byte) {
	copy(body[:CertIDLen], t.CertID[:])
	binary.BigEndian.PutUint32(body[CertIDLen:], t.Step)
	copy(body[CertIDLen+4:], t.Tag[:])
}

// ParseToken decodes the text of a TR1 token: check 1 of the spec. Any
// error it returns wraps ErrMalformed and says what was wrong. The text is
// taken as it is: a caller strips only its frame terminator, never spaces.
func ParseToken(text []byte) (Token, error) {
	var t Token
	if len(text) != TokenLen {
		return t, fmt.Errorf("%w: %d characters, a TR1 token has %d", ErrMalformed, len(text), TokenLen)
	}
	if string(text[:len(Prefix)]) != Prefix {
		return t, fmt.Errorf("%w: starts with %q, not %q", ErrMalformed, text[:len(Prefix)], Prefix)
	}
	var body [bodyLen]byte
	if _, err := base45.Decode(body[:], text[len(Prefix):]); err != nil {
		return t, fmt.Errorf("%w: body: %w", ErrMalformed, err)
	}
	copy(t.CertID[:], body[:CertIDLen])
	t.Step = binary.BigEndian.Uint32(body[CertIDLen:])
	copy(t.Tag[:], body[CertIDLen+4:])
	return t, nil
}

// truncate shortens hostile input before it goes into an error message.
func truncate(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
