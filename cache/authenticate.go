package cache

import (
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// AuthReport is what an authentication pass over a file found.
type AuthReport struct {
	// Records counts the records checked.
	Records int `json:"records"`
	// Failed counts those that failed; Bad names the first MaxAuthBad.
	Failed int          `json:"failed"`
	Bad    []*AuthError `json:"-"`
}

// MaxAuthBad bounds the failed records an AuthReport names.
const MaxAuthBad = 16

func (r *AuthReport) fail(e *AuthError) {
	r.Failed++
	if len(r.Bad) < MaxAuthBad {
		r.Bad = append(r.Bad, e)
	}
}

// Err is the first failure, or nil.
func (r *AuthReport) Err() error {
	if len(r.Bad) == 0 {
		return nil
	}
	return r.Bad[0]
}

// Authenticate checks every certificate record and the feed state under
// the cache key: what the integrity check (Check), which needs no key,
// cannot see. It runs in a read transaction, so writers (the feed, a
// grant's event in the journal) are not held up; about 0.2 µs a record.
func (c *Cache) Authenticate() (AuthReport, error) {
	var r AuthReport
	err := c.view(func(tx *bolt.Tx) error {
		r.Records++
		if _, err := c.readFeed(tx); err != nil {
			if ae, ok := err.(*AuthError); ok {
				r.fail(ae)
			} else {
				return err
			}
		}
		return tx.Bucket(bucketCerts).ForEach(func(k, v []byte) error {
			r.Records++
			var cert verify.Cert
			switch _, outcome := openRecord(c.aead, k, v, &cert); outcome {
			case recordShape:
				return damaged(c.Path(), 0, "record of cert %x: %d bytes", k, len(v))
			case recordForged:
				r.fail(&AuthError{Path: c.Path(), Bucket: "certs", Key: append([]byte(nil), k...)})
			}
			return nil
		})
	})
	if err != nil {
		return r, fmt.Errorf("cache: authenticate %s: %w", c.Path(), err)
	}
	return r, nil
}

// Authenticate checks every passage and event of the journal under the
// cache key, as held (each record was read from the disk at the open, or
// written since).
func (j *Journal) Authenticate() (AuthReport, error) {
	var r AuthReport
	j.passMu.RLock()
	for pk, p := range j.passes {
		r.Records++
		if p.bad {
			r.fail(&AuthError{Path: j.dir, Bucket: "passback", Key: append([]byte(nil), pk[:]...)})
		}
	}
	j.passMu.RUnlock()
	j.mu.Lock()
	evs := slices.Clone(j.st.events)
	j.mu.Unlock()
	for _, ev := range evs {
		r.Records++
		_, ok, err := openEvent(j.key, ev.seq, ev.sealed)
		if err != nil {
			return r, fmt.Errorf("journal: authenticate %s: %w", j.dir, damaged(j.dir, 0, "event %d: %v", ev.seq, err))
		}
		if !ok {
			r.fail(&AuthError{Path: j.dir, Bucket: "events", Key: u64(ev.seq)})
		}
	}
	return r, nil
}
