package cache

import (
	"bytes"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
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

// failed counts err when it is a record that fails authentication, and
// returns any other error.
func (r *AuthReport) failed(err error) error {
	if ae, ok := err.(*AuthError); ok {
		r.fail(ae)
		return nil
	}
	return err
}

// Err is the first failure, or nil.
func (r *AuthReport) Err() error {
	if len(r.Bad) == 0 {
		return nil
	}
	return r.Bad[0]
}

// Authenticate checks every group of every run, and the file's own
// records (the feed state, the runs' record, the resync state), under the
// cache key: what the integrity check (Check), which needs no key, cannot
// see. The delta's records were authenticated as Open read them, and the
// runs' filters too. It runs in read transactions, so writers (the feed,
// a grant's event in the journal) are not held up; about 1 µs a group of
// 61.
func (c *Cache) Authenticate() (AuthReport, error) {
	var r AuthReport
	c.mu.RLock()
	runs := c.runs
	c.mu.RUnlock()
	err := c.view(func(tx *bolt.Tx) error {
		r.Records += 3
		_, err := c.readFeed(tx)
		if err = r.failed(err); err != nil {
			return err
		}
		_, _, err = c.readRuns(tx)
		if err = r.failed(err); err != nil {
			return err
		}
		_, err = c.readResync(tx)
		if err = r.failed(err); err != nil {
			return err
		}
		for _, run := range runs {
			err := c.eachGroup(tx, run.Seq, func(g *group) error {
				// Each certificate of a block that fails is named: each
				// is refused until the feed's record replaces it.
				for s := 0; s*blockSize < g.n; s++ {
					hi := min(g.n, (s+1)*blockSize)
					r.Records += hi - s*blockSize
					if !g.openBlock(c.aead, s) {
						for i := s * blockSize; i < hi; i++ {
							r.fail(&AuthError{Path: c.Path(), Bucket: "certs", Key: bytes.Clone(g.id(i))})
						}
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
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
