package diag

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/internal/secret"
)

// The checks of sealed state.
const (
	// NameKeys: where the keys come from, whether they are sealed, and
	// whether the cache key opens the gate's files.
	NameKeys = "keys"
	// NameRecords: every record authenticates under the cache key.
	NameRecords = "records"
)

// DamagedRecord is a record that failed authentication: never used for a
// decision, and healed by the agent (refetched from the feed, or a
// passage replaced conservatively).
type DamagedRecord struct {
	// Record names it: "certificate ID", "passage of ID (entry)",
	// "event 42", "feed state".
	Record string `json:"record"`
	File   string `json:"file"`
	Bucket string `json:"bucket"`
	CertID string `json:"cert_id,omitempty"`
	// Seq is an event's sequence number.
	Seq uint64 `json:"seq,omitempty"`
	// First and Last are when a lookup (or the check at start) met it,
	// Times how often.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	Times int       `json:"times"`
	// Action is what the agent did about it.
	Action   string    `json:"action,omitempty"`
	Healed   bool      `json:"healed"`
	HealedAt time.Time `json:"healed_at,omitzero"`
}

// keysFacts is what the keys check looks at.
type keysFacts struct {
	keys *config.LoadedKeys
	// err: the keys could not be loaded.
	err error
	// wrongKey: the cache key does not open the cache or the journal
	// (ErrWrongKey), with the file.
	wrongKey error
	// rebuilding names the old cache (keys in plaintext) being replaced,
	// legacy its schema when diag found it in place.
	rebuilding string
	legacy     int
	cachePath  string
}

func judgeKeys(f keysFacts) Check {
	c := Check{Name: NameKeys, Facts: map[string]any{}}
	if f.err != nil {
		c.Status, c.Line = Fail, fmt.Sprintf("%v: %s", oneLine(f.err), keyAdvice(f.err))
		return c
	}
	k := f.keys
	c.Facts["cache_key"], c.Facts["sealed"] = k.CacheFrom, k.Sealed()
	var fleet, plain []string
	if !k.CacheFrom.Sealed {
		plain = append(plain, "the cache key")
	}
	for i, id := range k.FleetIDs {
		fleet = append(fleet, id.String())
		c.Facts["fleet_key_"+id.String()] = k.FleetFrom[i]
		if !k.FleetFrom[i].Sealed {
			plain = append(plain, "fleet key "+id.String())
		}
	}
	c.Facts["fleet_keys"] = fleet
	if f.wrongKey != nil {
		path := f.cachePath
		c.Status = Fail
		c.Line = fmt.Sprintf("the cache key (%s) does not open the gate's files (%v): the credential is not the one they were made with; "+
			"restore the right one (systemd-creds encrypt the key the station keeps for this gate, see docs/install.md); if it is lost: stop the agent, "+
			"move %s aside (it is rebuilt from the key feed) and %s aside (its events cannot be read without the old key: hand it to the station), then start it",
			k.CacheFrom, oneLine(f.wrongKey), path, cache.JournalPath(path))
		return c
	}
	from := fmt.Sprintf("cache key from %s; fleet keys %s", k.CacheFrom, strings.Join(fleet, ", "))
	switch {
	case f.legacy > 0:
		c.Status = Warn
		c.Line = fmt.Sprintf("%s; %s is of schema %d (certificate keys in plaintext): the agent rebuilds it from the key feed at its next start and removes it once the new one holds a full sync", from, f.cachePath, f.legacy)
	case f.rebuilding != "":
		c.Status = Warn
		c.Line = fmt.Sprintf("%s; the key cache is being rebuilt from the key feed: the old one (keys in plaintext) is removed once the new one holds a full sync; codes are refused until then", from)
	case len(plain) > 0:
		c.Status = Warn
		c.Line = fmt.Sprintf("%s; %s in the clear on the disk: anyone with a copy of the SD card can open the cache; seal it with systemd-creds encrypt and LoadCredentialEncrypted= (docs/install.md: The keys)", from, strings.Join(plain, " and "))
	default:
		c.Status = Pass
		c.Line = "keys sealed: " + from
	}
	return c
}

// keyAdvice says what to do about a key that cannot be loaded.
func keyAdvice(err error) string {
	var ke *config.KeyError
	field := "keys"
	if errors.As(err, &ke) {
		field = ke.Field
	}
	var se *secret.Error
	errors.As(err, &se)
	switch {
	case errors.Is(err, secret.ErrNoCredentials):
		return fmt.Sprintf("seal the key as that credential (systemd-creds encrypt --name=NAME KEYFILE /etc/credstore.encrypted/NAME) and load it in the unit (LoadCredentialEncrypted=NAME), or give a key file's absolute path in %s", field)
	case errors.Is(err, secret.ErrDecrypt):
		return "the sealed credential does not decrypt on this machine: it was sealed on another board (another TPM2 or host key) or under another name; seal it again here with systemd-creds encrypt"
	case errors.Is(err, secret.ErrExposed) && se != nil:
		return fmt.Sprintf("others may read it, so the key may have leaked: chmod 0640 %s (owner root, group gateagent), and consider new keys", se.Path)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("put the key there, or correct %s in the config", field)
	case errors.Is(err, fs.ErrPermission) && se != nil:
		return fmt.Sprintf("let the agent's user read it: chgrp gateagent %s && chmod 0640 %s", se.Path, se.Path)
	case errors.Is(err, config.ErrKeyFormat) && field == "keys.cache_key":
		return "a cache key is exactly 32 bytes: make one with head -c 32 /dev/urandom (no newline)"
	case errors.Is(err, config.ErrKeyFormat):
		return "a fleet key is the file `issuer fleet-keygen --out FILE` writes"
	}
	return fmt.Sprintf("check %s in the config", field)
}

// recordsFacts is what the records check looks at.
type recordsFacts struct {
	// damaged: what the running agent met and heals.
	damaged []DamagedRecord
	daemon  bool
	// cache and journal: an authentication pass over each file.
	cache, journal     cache.AuthReport
	cacheErr, jnlErr   error
	cacheRun, jnlRun   bool
	checkAge           time.Duration
	cachePath, jnlPath string
}

func judgeRecords(f recordsFacts) Check {
	c := Check{Name: NameRecords, Facts: map[string]any{}}
	var open, healed []DamagedRecord
	for _, d := range f.damaged {
		if d.Healed {
			healed = append(healed, d)
		} else {
			open = append(open, d)
		}
	}
	// A failed record the pass found that the agent has not met yet (or
	// that diag found with the agent stopped).
	known := map[string]bool{}
	for _, d := range f.damaged {
		known[d.Record] = true
	}
	for _, r := range []*cache.AuthReport{&f.cache, &f.journal} {
		for _, ae := range r.Bad {
			if !known[ae.Record()] {
				open = append(open, DamagedRecord{Record: ae.Record(), File: ae.Path, Bucket: ae.Bucket})
				known[ae.Record()] = true
			}
		}
	}
	c.Facts["damaged"], c.Facts["healed_last_hour"] = open, healed
	if f.cacheRun {
		c.Facts["cache_records"], c.Facts["cache_failed"] = f.cache.Records, f.cache.Failed
	}
	if f.jnlRun {
		c.Facts["journal_records"], c.Facts["journal_failed"] = f.journal.Records, f.journal.Failed
	}
	failed := f.cache.Failed + f.journal.Failed
	if len(open) > 0 {
		var names []string
		for _, d := range open[:min(len(open), 3)] {
			names = append(names, d.Record)
		}
		more := ""
		if n := max(len(open), failed) - len(names); n > 0 {
			more = fmt.Sprintf(" and %d more", n)
		}
		c.Status = Fail
		what := "the running agent refuses their codes (undecided, the gate stays shut for them) and is refetching them from the key feed: they heal by themselves once the feed answers (see the feed check)"
		if !f.daemon {
			what = "the agent, once started, refuses their codes (undecided) and refetches them from the key feed"
		}
		c.Line = fmt.Sprintf("%s%s failed the integrity check (bytes changed on the disk, so never used): %s; a damaged passage is replaced by the latest it can have been (refused as PASSBACK for one window); if records keep failing, the SD card is failing: replace it",
			strings.Join(names, ", "), more, what)
		return c
	}
	switch {
	case f.cacheErr != nil || f.jnlErr != nil:
		c.Status, c.Line = Skip, fmt.Sprintf("records not checked: %v (see the cache and backlog checks)", oneLine(errors.Join(f.cacheErr, f.jnlErr)))
		return c
	case !f.cacheRun && !f.jnlRun:
		c.Status, c.Line = Skip, "records not checked: the files could not be opened (see the keys and cache checks)"
		return c
	case !f.cacheRun:
		// The cache did not open (its own state failed its checks, or
		// it is of an old schema): none of its records were read, which
		// is not the same as none failing.
		c.Status, c.Line = Skip, fmt.Sprintf("the key cache's records not checked: it could not be opened (see the cache check); %d records of the journal authenticate under the cache key", f.journal.Records)
		return c
	case !f.jnlRun:
		c.Status, c.Line = Skip, fmt.Sprintf("the journal's records not checked: it could not be opened (see the backlog check); %d records of the key cache authenticate under the cache key", f.cache.Records)
		return c
	}
	summary := fmt.Sprintf("%d records of the key cache and %d of the journal authenticate under the cache key", f.cache.Records, f.journal.Records)
	if f.checkAge >= time.Second {
		summary += fmt.Sprintf(" (checked %s ago; diag --deep checks again)", f.checkAge.Round(time.Second))
	}
	if len(healed) > 0 {
		var names []string
		for _, d := range healed[:min(len(healed), 3)] {
			names = append(names, d.Record)
		}
		c.Status = Warn
		c.Line = fmt.Sprintf("%s; %d healed in the last hour (%s): if records keep failing, the SD card is failing: replace it", summary, len(healed), strings.Join(names, ", "))
		return c
	}
	c.Status, c.Line = Pass, summary
	return c
}

// wrongKeyOf returns err when it says the cache key does not open a file.
func wrongKeyOf(errs ...error) error {
	for _, err := range errs {
		if errors.Is(err, cache.ErrWrongKey) {
			return err
		}
	}
	return nil
}

// legacyOf returns the schema of a plaintext cache err met, 0 for none.
func legacyOf(path string, err error) int {
	if !errors.Is(err, cache.ErrPlaintext) {
		return 0
	}
	n, _ := cache.LegacySchema(path)
	return n
}
