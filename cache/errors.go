package cache

import "errors"

// Errors returned by this package, each wrapped with what and where; test
// for them with errors.Is. Every message ends with what the operator can do.
var (
	// ErrLocked: another process (normally the gateagent daemon) holds the
	// cache file open.
	ErrLocked = errors.New("cache file is locked by another process: stop the gateagent daemon or ask it through `gateagent diag`")

	// ErrCorrupt: the file is not a bbolt database, is damaged, or is not a
	// gateagent cache.
	ErrCorrupt = errors.New("cache file is damaged or not a gateagent cache: move it aside and restart the agent, which resyncs from the key feed")

	// ErrSchema: the file was written by a build that uses another layout.
	ErrSchema = errors.New("cache file has a schema this build does not know: run a gateagent that knows it, or move the file aside and let the agent resync")

	// ErrBadBatch: a feed batch failed validation; nothing was written.
	ErrBadBatch = errors.New("feed batch refused, nothing written")

	// ErrGap: a feed batch starts after the cache's cursor; records in
	// between are missing. The feed client must resync.
	ErrGap = errors.New("feed batch leaves a gap after the cache's cursor: resync from the feed")

	// ErrReadOnly: a write was asked of a cache opened read-only.
	ErrReadOnly = errors.New("cache is open read-only")
)
