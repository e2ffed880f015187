package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"gateagent/feed"
)

// The key file holds the key ID and the Ed25519 seed:
//
//	gateagent-issuer-key v1
//	KEYID BASE64SEED
const keyHeader = "gateagent-issuer-key v1"

// loadKey reads a key file written by `issuer keygen`. It refuses a file
// that group or others may read or write.
func loadKey(path string) (*feed.Signer, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no key file %s: create one with `issuer keygen --key %s`", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("key file %s has mode %04o: group or others have access to it, so the signing key may have leaked; run `chmod 600 %s` (and consider a new key)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	s, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w: it should be the file `issuer keygen` wrote", path, err)
	}
	return s, nil
}

func parseKey(data []byte) (*feed.Signer, error) {
	head, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok || string(head) != keyHeader {
		return nil, fmt.Errorf("not an issuer key file (the first line is not %q)", keyHeader)
	}
	line, rest, ok := bytes.Cut(rest, []byte("\n"))
	if !ok || len(rest) != 0 {
		return nil, errors.New("want exactly two lines")
	}
	id, b64, ok := strings.Cut(string(line), " ")
	if !ok {
		return nil, errors.New("the second line is not KEYID BASE64SEED")
	}
	seed, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("the seed is not %d bytes in base64", ed25519.SeedSize)
	}
	return feed.NewSigner(id, ed25519.NewKeyFromSeed(seed))
}

// writeKey writes s's key file at path with mode 0600, atomically, and
// never over an existing file.
func writeKey(path string, s *feed.Signer) error {
	content := fmt.Sprintf("%s\n%s %s\n", keyHeader, s.KeyID, base64.StdEncoding.EncodeToString(s.Key.Seed()))
	if err := writeSecret(path, []byte(content)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to overwrite a signing key; choose another --key, or move the old file aside first", path)
		}
		return fmt.Errorf("write key file: %w", err)
	}
	return nil
}

// writeSecret writes content to a new file at path with mode 0600,
// atomically: a temp file in the same directory, fsync, rename. It
// refuses to replace a file (fs.ErrExist).
func writeSecret(path string, content []byte) (err error) {
	if _, err := os.Lstat(path); err == nil {
		return fs.ErrExist
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err := tmp.Write(content); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// A hard link, not a rename: it fails if the name appeared meanwhile,
	// so a key is never replaced.
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	os.Remove(tmp.Name())
	if d, err := os.Open(dir); err == nil { // make the new name durable
		d.Sync()
		d.Close()
	}
	return nil
}
