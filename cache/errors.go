package cache

import (
	"encoding/binary"
	"errors"
	"fmt"

	"gateagent/internal/plural"
	"gateagent/verify"
)

// Errors returned by this package, each wrapped with what and where; test
// for them with errors.Is. What the operator should do is said where the
// error is shown (diag, the CLI, the agent's log), not here.
var (
	// ErrLocked: another process (normally the gateagent daemon) holds the
	// file open.
	ErrLocked = errors.New("file is locked by another process")

	// ErrCorrupt: the file is empty, cut short, damaged, or not a file of
	// this kind. The error is a *CorruptError, which says which.
	ErrCorrupt = errors.New("file is damaged")

	// ErrSchema: the file was written by a build that uses another layout.
	ErrSchema = errors.New("file has a schema this build does not know")

	// ErrBadBatch: a feed batch failed validation; nothing was written.
	ErrBadBatch = errors.New("feed batch refused, nothing written")

	// ErrGap: a feed batch starts after the cache's cursor; records in
	// between are missing. The feed client must resync.
	ErrGap = errors.New("feed batch leaves a gap after the cache's cursor: resync from the feed")

	// ErrReadOnly: a write was asked of a file opened read-only.
	ErrReadOnly = errors.New("file is open read-only")

	// ErrNotSynced: the certificate cache has not completed a full sync
	// from the key feed (a new or rebuilt cache): the gate cannot decide.
	ErrNotSynced = errors.New("key cache not yet synced from the key feed")

	// ErrNoKey: a file was opened without the cache key.
	ErrNoKey = errors.New("no cache key given")

	// ErrWrongKey: the file was made under another cache key (the
	// credential is not the one this gate's files were made with).
	ErrWrongKey = errors.New("the cache key does not open this file: it was made under another key")

	// ErrPlaintext: a certificate cache written before keys were sealed
	// (schema 1 or 2): its keys are in plaintext and its records
	// unauthenticated. It is not read: the agent rebuilds the cache from
	// the key feed into a new file and removes the old one.
	ErrPlaintext = errors.New("cache of an older schema, with certificate keys in plaintext and unauthenticated records")

	// ErrAuth: a record failed authentication under the cache key (bytes
	// changed on the disk). The error is an *AuthError naming the record.
	ErrAuth = errors.New("record fails authentication")
)

// AuthError is a record that failed authentication: never used for a
// decision. errors.Is(err, ErrAuth) matches it.
type AuthError struct {
	Path string
	// Bucket is "certs", "passback", "events" or "meta".
	Bucket string
	// Key is the record's key: a cert ID (16 bytes), cert ID and
	// direction (17), a sequence number (8), or a meta key's name.
	Key []byte
}

// Error names the record; the callers' wrapping names the file.
func (e *AuthError) Error() string { return e.Record() + " fails authentication" }

// Is makes errors.Is(err, ErrAuth) true.
func (e *AuthError) Is(target error) bool { return target == ErrAuth }

// Record names the record for people: "certificate ID", "passage of ID
// (entry)", "event 42", "feed state".
func (e *AuthError) Record() string {
	switch {
	case e.Bucket == "certs" && len(e.Key) == verify.CertIDLen:
		return "certificate " + verify.CertID(e.Key).String()
	case e.Bucket == "passback" && len(e.Key) == passKeyLen:
		return fmt.Sprintf("passage of %s (%s)", verify.CertID(e.Key[:verify.CertIDLen]), verify.Direction(e.Key[verify.CertIDLen]))
	case e.Bucket == "events" && len(e.Key) == 8:
		return fmt.Sprintf("event %d", binary.BigEndian.Uint64(e.Key))
	case e.Bucket == "meta" && string(e.Key) == "feed":
		return "feed state"
	}
	return fmt.Sprintf("record %s/%x", e.Bucket, e.Key)
}

// CertID is the certificate the record is about, if any.
func (e *AuthError) CertID() (verify.CertID, bool) {
	if (e.Bucket == "certs" || e.Bucket == "passback") && len(e.Key) >= verify.CertIDLen {
		return verify.CertID(e.Key[:verify.CertIDLen]), true
	}
	return verify.CertID{}, false
}

// CorruptKind says how a file is not whole.
type CorruptKind uint8

// The kinds of corruption.
const (
	// Damaged: the file's pages or records are not what this package
	// writes (bytes overwritten, a bad disk, another program's file).
	Damaged CorruptKind = iota
	// Empty: the file holds nothing yet: zero bytes, or bbolt's first
	// pages without this package's buckets. A process killed in its
	// first moments leaves one; the agent sets it up at its next start.
	Empty
	// Truncated: the file is shorter than its own pages say (a full disk,
	// an interrupted copy).
	Truncated
	// Foreign: a whole bbolt file, but not of the kind asked for (a
	// journal opened as a cache, or another program's database).
	Foreign
	// Unauthentic: the pages are whole, but a record the whole file
	// depends on (the feed's cursor, the key check value) fails
	// authentication under the cache key: bytes changed on the disk.
	Unauthentic
)

var corruptKindNames = [...]string{"damaged", "empty", "truncated", "not a gateagent file of this kind", "unauthentic"}

func (k CorruptKind) String() string {
	if int(k) < len(corruptKindNames) {
		return corruptKindNames[k]
	}
	return fmt.Sprintf("corrupt_kind(%d)", uint8(k))
}

// CorruptError is what the integrity check, or a read that met a damaged
// page, found wrong with a file. errors.Is(err, ErrCorrupt) matches it.
type CorruptError struct {
	Path string
	Kind CorruptKind
	// Page is the first damaged page, when one is known (0: none).
	Page uint64
	// Detail is the first problem found, for the log.
	Detail string
	// Problems counts every problem found (at least 1).
	Problems int
}

// Error says what is wrong; the callers' wrapping names the file.
func (e *CorruptError) Error() string {
	s := e.Kind.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Problems > 1 {
		s += " (and " + plural.N(e.Problems-1, "more problem", "more problems") + ")"
	}
	return s
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func damaged(path string, page uint64, format string, a ...any) *CorruptError {
	return &CorruptError{Path: path, Kind: Damaged, Page: page, Detail: fmt.Sprintf(format, a...), Problems: 1}
}
