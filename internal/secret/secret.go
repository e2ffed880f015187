// Package secret reads the gate's keys (the cache key, the fleet private
// keys) from where the config says they are:
//
//   - a systemd credential, named by a bare name ("gateagent-cache-key"):
//     the unit's LoadCredentialEncrypted= decrypts it (with the TPM2 or the
//     host key) into $CREDENTIALS_DIRECTORY/NAME for the service alone.
//     Outside the service (diag or run --check as root) the sealed file in
//     /etc/credstore.encrypted is decrypted with `systemd-creds decrypt`;
//   - a file, named by an absolute path: the key in the clear on the disk,
//     for the demo, tests and bench boards. It must not be readable by
//     others.
//
// Nothing here logs or prints a key; errors name the reference and the
// file, never the bytes.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"gateagent/internal/regfile"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Kind says where a secret came from.
type Kind string

// The kinds of source.
const (
	// File: a key file, in the clear on the disk.
	File Kind = "file"
	// Credential: $CREDENTIALS_DIRECTORY, where systemd put it for the
	// service.
	Credential Kind = "credential"
	// Credstore: a sealed credential decrypted here with systemd-creds
	// (outside the service).
	Credstore Kind = "credstore"
)

// Source says where a secret was read from.
type Source struct {
	// Ref is the reference as the config gives it.
	Ref  string `json:"ref"`
	Kind Kind   `json:"kind"`
	// Path is the file read (or decrypted).
	Path string `json:"path"`
	// Sealed: the secret is encrypted at rest (a sealed credential in a
	// credstore), not in the clear on the disk.
	Sealed bool `json:"sealed"`
}

func (s Source) String() string {
	switch s.Kind {
	case File:
		return "file " + s.Path
	case Credential:
		if s.Sealed {
			return "systemd credential " + s.Ref + " (sealed)"
		}
		return "systemd credential " + s.Ref
	case Credstore:
		return "systemd credential " + s.Ref + " (sealed, decrypted with systemd-creds from " + s.Path + ")"
	}
	return s.Ref
}

// Errors of Read, wrapped in an *Error.
var (
	// ErrRef: the reference is neither a credential name nor an absolute path.
	ErrRef = errors.New("not a credential name (letters, digits, '-', '_', '.') or an absolute path")
	// ErrNoCredentials: a credential was named, but the agent runs
	// without $CREDENTIALS_DIRECTORY and no sealed credential of that name
	// is in a credstore.
	ErrNoCredentials = errors.New("no such systemd credential: $CREDENTIALS_DIRECTORY is not set (not started by the unit) and no sealed credential of that name is in /etc/credstore.encrypted")
	// ErrExposed: a key file others may read or the group may write.
	ErrExposed = errors.New("key file is open to other users")
	// ErrSize: larger than any key of its kind.
	ErrSize = errors.New("file too large for a key")
	// ErrDecrypt: systemd-creds could not decrypt a sealed credential.
	ErrDecrypt = errors.New("systemd-creds could not decrypt the credential")
)

// Error is a secret that could not be read.
type Error struct {
	Ref  string
	Path string // the file, when one was found
	Mode fs.FileMode
	Err  error
}

func (e *Error) Error() string {
	switch {
	case errors.Is(e.Err, ErrExposed):
		return fmt.Sprintf("%s: %v (mode %04o)", e.Path, e.Err, e.Mode.Perm())
	case e.Path != "":
		return fmt.Sprintf("%s (%s): %v", e.Ref, e.Path, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Ref, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// CredstoreDirs are where sealed credentials are looked for outside the
// service, in systemd's order. Tests replace them.
var CredstoreDirs = []string{"/etc/credstore.encrypted", "/run/credstore.encrypted", "/usr/local/lib/credstore.encrypted", "/usr/lib/credstore.encrypted"}

// Decrypt decrypts the sealed credential file path named name; it runs
// `systemd-creds decrypt`. Tests replace it.
var Decrypt = func(name, path string) ([]byte, error) {
	cmd := exec.Command("systemd-creds", "decrypt", "--name="+name, path, "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("%w: %s", ErrDecrypt, msg)
	}
	return out, nil
}

// IsCredential reports whether ref names a systemd credential (else it is
// a path).
func IsCredential(ref string) bool { return !strings.HasPrefix(ref, "/") }

// CheckRef checks a reference's form without reading anything.
func CheckRef(ref string) error {
	if strings.HasPrefix(ref, "/") {
		if filepath.Clean(ref) != ref {
			return fmt.Errorf("%q: %w", ref, ErrRef)
		}
		return nil
	}
	if ref == "" || len(ref) > 255 || ref == "." || ref == ".." {
		return fmt.Errorf("%q: %w", ref, ErrRef)
	}
	for _, c := range ref {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: %w", ref, ErrRef)
		}
	}
	return nil
}

// Read reads the secret ref names, at most max bytes.
func Read(ref string, max int) ([]byte, Source, error) {
	src := Source{Ref: ref}
	if err := CheckRef(ref); err != nil {
		return nil, src, &Error{Ref: ref, Err: ErrRef}
	}
	if !IsCredential(ref) {
		src.Kind, src.Path = File, ref
		b, err := readFile(ref, max, true)
		return b, src, err
	}
	sealed := sealedFile(ref)
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		src.Kind, src.Path, src.Sealed = Credential, filepath.Join(dir, ref), sealed != ""
		b, err := readFile(src.Path, max, false)
		if err != nil {
			err.(*Error).Ref = ref
		}
		return b, src, err
	}
	if sealed == "" {
		return nil, src, &Error{Ref: ref, Err: ErrNoCredentials}
	}
	src.Kind, src.Path, src.Sealed = Credstore, sealed, true
	b, err := Decrypt(ref, sealed)
	if err != nil {
		return nil, src, &Error{Ref: ref, Path: sealed, Err: err}
	}
	if len(b) > max {
		clear(b)
		return nil, src, &Error{Ref: ref, Path: sealed, Err: ErrSize}
	}
	return b, src, nil
}

// sealedFile is the sealed credential file of name in a credstore, "" for
// none.
func sealedFile(name string) string {
	for _, d := range CredstoreDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// readFile reads a key file: a regular file of at most max bytes, and (a
// key file of the config's) not open to others.
func readFile(path string, max int, strict bool) ([]byte, error) {
	f, fi, err := regfile.Open(path) // a FIFO in its place must not block
	var pe *fs.PathError
	if errors.As(err, &pe) && errors.Is(err, regfile.ErrNotRegular) {
		err = pe.Err // the Error names the path
	}
	if err != nil {
		return nil, &Error{Ref: path, Path: path, Err: err}
	}
	defer f.Close()
	if strict && fi.Mode().Perm()&0o027 != 0 {
		return nil, &Error{Ref: path, Path: path, Mode: fi.Mode(), Err: ErrExposed}
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, &Error{Ref: path, Path: path, Err: err}
	}
	if len(b) > max {
		clear(b)
		return nil, &Error{Ref: path, Path: path, Err: ErrSize}
	}
	return b, nil
}

// SealedOnly reports the sealed credential file of ref when ref is a
// credential that only systemd (or root, with systemd-creds) can open
// here: no $CREDENTIALS_DIRECTORY, and a sealed file in a credstore.
func SealedOnly(ref string) (string, bool) {
	if !IsCredential(ref) || os.Getenv("CREDENTIALS_DIRECTORY") != "" {
		return "", false
	}
	p := sealedFile(ref)
	return p, p != ""
}
