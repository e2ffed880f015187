package cache

import (
	"errors"
	"fmt"

	"gateagent/internal/plural"
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
)

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
)

var corruptKindNames = [...]string{"damaged", "empty", "truncated", "not a gateagent file of this kind"}

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
