// Package base45 implements the Base45 encoding of RFC 9285.
//
// Base45 turns each pair of bytes into three characters of the QR
// alphanumeric set, and a last single byte into two, so that binary data fits
// the QR code's dense alphanumeric mode. Decoding is strict: a character
// outside the alphabet, a length that leaves one character over, or a group
// whose value exceeds what its bytes can hold is an error, never a guess.
package base45

import (
	"errors"
	"fmt"
)

// Alphabet is the 45-character alphabet of RFC 9285, in value order.
const Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

// ErrInvalid is wrapped by every decoding error.
var ErrInvalid = errors.New("base45: invalid input")

// invalid marks a byte that is not in the alphabet.
const invalid = 0xff

var decodeMap = func() (m [256]byte) {
	for i := range m {
		m[i] = invalid
	}
	for i := range len(Alphabet) {
		m[Alphabet[i]] = byte(i)
	}
	return m
}()

// EncodedLen returns the length of the encoding of n bytes.
func EncodedLen(n int) int { return n/2*3 + n%2*2 }

// DecodedLen returns the number of bytes that n characters decode to, and
// false when no valid encoding has that length.
func DecodedLen(n int) (int, bool) {
	if n%3 == 1 {
		return 0, false
	}
	return n/3*2 + n%3/2, true
}

// Encode writes the encoding of src into dst, which must hold
// EncodedLen(len(src)) bytes.
func Encode(dst, src []byte) {
	for len(src) >= 2 {
		n := uint(src[0])<<8 | uint(src[1])
		dst[0] = Alphabet[n%45]
		dst[1] = Alphabet[n/45%45]
		dst[2] = Alphabet[n/2025]
		src, dst = src[2:], dst[3:]
	}
	if len(src) == 1 {
		dst[0] = Alphabet[src[0]%45]
		dst[1] = Alphabet[src[0]/45]
	}
}

// EncodeToString returns the encoding of src.
func EncodeToString(src []byte) string {
	dst := make([]byte, EncodedLen(len(src)))
	Encode(dst, src)
	return string(dst)
}

// Decode decodes src into dst, which must hold the length DecodedLen
// returns, and returns the number of bytes written. It reads nothing from
// src past its end and writes nothing to dst past what it returns; on error
// the contents of dst are unspecified.
func Decode(dst, src []byte) (int, error) {
	want, ok := DecodedLen(len(src))
	if !ok {
		return 0, fmt.Errorf("%w: length %d leaves one character over (a valid length is 0 or 2 modulo 3)", ErrInvalid, len(src))
	}
	if len(dst) < want {
		return 0, fmt.Errorf("%w: destination holds %d bytes, need %d", ErrInvalid, len(dst), want)
	}
	n := 0
	for i := 0; i < len(src); i += 3 {
		group := src[i:min(i+3, len(src))]
		var v uint
		for j := len(group) - 1; j >= 0; j-- {
			d := decodeMap[group[j]]
			if d == invalid {
				return 0, fmt.Errorf("%w: character %q at offset %d is not in the base45 alphabet", ErrInvalid, group[j], i+j)
			}
			v = v*45 + uint(d)
		}
		if len(group) == 3 {
			if v > 0xffff {
				return 0, fmt.Errorf("%w: group %q at offset %d is %d, over 65535", ErrInvalid, group, i, v)
			}
			dst[n], dst[n+1] = byte(v>>8), byte(v)
			n += 2
		} else {
			if v > 0xff {
				return 0, fmt.Errorf("%w: final pair %q at offset %d is %d, over 255", ErrInvalid, group, i, v)
			}
			dst[n] = byte(v)
			n++
		}
	}
	return n, nil
}

// DecodeString returns the bytes that s encodes.
func DecodeString(s string) ([]byte, error) {
	want, ok := DecodedLen(len(s))
	if !ok {
		want = 0
	}
	dst := make([]byte, want)
	n, err := Decode(dst, []byte(s))
	if err != nil {
		return nil, err
	}
	return dst[:n], nil
}
