package station

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"gateagent/internal/regfile"
)

// KeySize is the size of a station key this package writes: AES-256.
// Keys of 16 and 24 bytes (AES-128, AES-192) are read too.
const KeySize = 32

// maxKeyFile bounds a key file: a base64 key and a line end.
const maxKeyFile = 256

// LoadKeys reads the station keys from files, the primary (the one this
// gate encrypts with) first; the others are accepted from peers too, for
// a rotation. Each file holds one key in standard base64 (as
// `head -c 32 /dev/urandom | base64` writes it) and must be readable by
// its owner only: a key that others on the board can read is refused
// with a *KeyFileError wrapping ErrKeyMode.
func LoadKeys(paths []string) ([][]byte, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no key file", ErrConfig)
	}
	keys := make([][]byte, 0, len(paths))
	for _, p := range paths {
		k, err := loadKey(p)
		if err != nil {
			return nil, err
		}
		for _, have := range keys {
			if bytes.Equal(have, k) {
				return nil, &KeyFileError{Path: p, Err: fmt.Errorf("%w: the same key as an earlier file", ErrKeyFormat)}
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func loadKey(path string) ([]byte, error) {
	f, st, err := regfile.Open(path) // a FIFO in its place must not block
	if errors.Is(err, regfile.ErrNotRegular) {
		return nil, &KeyFileError{Path: path, Err: fmt.Errorf("%w: %w", ErrKeyFormat, errors.Unwrap(err))}
	}
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	defer f.Close()
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, &KeyFileError{Path: path, Err: fmt.Errorf("%w (mode %04o)", ErrKeyMode, perm)}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	if len(b) > maxKeyFile {
		return nil, &KeyFileError{Path: path, Err: fmt.Errorf("%w: larger than %d bytes", ErrKeyFormat, maxKeyFile)}
	}
	k, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: fmt.Errorf("%w: not base64", ErrKeyFormat)}
	}
	if err := checkKey(k); err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	return k, nil
}

func checkKey(k []byte) error {
	switch len(k) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%w: %d bytes, want 32 (or 16 or 24)", ErrKeyFormat, len(k))
}
