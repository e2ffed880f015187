package issuer

import (
	"bytes"
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/feed"
	"gateagent/verify"
)

// How the issuer serves the feed.
//
// The log numbers every change (an issue, a revocation) from 1. Log page p
// holds changes (p·N, (p+1)·N]; once full it never changes and any HTTP
// cache may keep it. The last page fills as changes come and is served for
// revalidation.
//
// A gate with an empty cache, or one further behind than the log keeps,
// takes a snapshot: the certificates in ID order as of the position
// S = ⌊head/N⌋·N, N per page, each page following the last ID of the one
// before. A page is a function of (S, after) alone: it holds the
// certificates issued at or before S that had not expired at the time of
// change S, revoked if revoked at or before S. Gates of one station that
// resync together fetch the same pages, so a station cache serves them.
// The gate then follows the log from S.

// ErrGone: the position asked for is no longer kept; resync from the
// snapshot the head names.
var ErrGone = errors.New("feed position no longer kept: take the snapshot the head names")

// ErrNotYet: the position asked for is after the head.
var ErrNotYet = errors.New("feed position not reached yet")

// Page is a signed feed document and whether it can never change.
type Page struct {
	Data      []byte
	Immutable bool
	// ETag names the document's content.
	ETag string
}

type feedMeta struct {
	head, pruned uint64
}

func readMeta(tx *bolt.Tx) feedMeta {
	m := tx.Bucket(bucketMeta)
	return feedMeta{head: getU64(m, keyHead), pruned: getU64(m, keyPruned)}
}

func (is *Issuer) snapshotPos(head uint64) uint64 {
	n := uint64(is.opt.PageSize)
	return head / n * n
}

func (is *Issuer) doc(kind feed.Kind) *feed.Doc {
	return &feed.Doc{Kind: kind, Epoch: is.epoch, IssuerTime: is.opt.Now(), MaxAge: is.opt.MaxAge, PageSize: uint32(is.opt.PageSize)}
}

// Head returns the signed head for a gate's nonce: never cached.
func (is *Issuer) Head(nonce [feed.NonceLen]byte) ([]byte, error) {
	var m feedMeta
	if err := is.db.View(func(tx *bolt.Tx) error { m = readMeta(tx); return nil }); err != nil {
		return nil, fmt.Errorf("issuer: head: %w", err)
	}
	d := is.doc(feed.KindHead)
	d.From, d.Next, d.Snapshot, d.Nonce = m.head, m.head, is.snapshotPos(m.head), nonce
	return is.opt.Signer.Sign(d, nil) // a head holds no key
}

// LogPage returns log page p.
func (is *Issuer) LogPage(p uint64) (Page, error) {
	n := uint64(is.opt.PageSize)
	from := p * n
	if from/n != p {
		return Page{}, fmt.Errorf("issuer: log page %d: %w", p, ErrNotYet)
	}
	key := fmt.Sprintf("log/%d/%d", n, p)
	if pg, ok := is.docs.get(key); ok {
		return pg, nil
	}
	var pg Page
	err := is.db.View(func(tx *bolt.Tx) error {
		m := readMeta(tx)
		switch {
		case from > m.head:
			return ErrNotYet
		case from < m.pruned:
			return ErrGone
		}
		d := is.doc(feed.KindLog)
		d.From = from
		d.Next = min(from+n, m.head)
		certs := tx.Bucket(bucketCerts)
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(u64(from + 1)); k != nil && binary.BigEndian.Uint64(k) <= d.Next; k, v = c.Next() {
			if len(v) != logLen {
				return fmt.Errorf("damaged log entry %x", k)
			}
			id := verify.CertID(v[1:17])
			switch v[0] {
			case logIssue:
				var s stored
				if err := decodeCert(id[:], certs.Get(id[:]), &s); err != nil {
					return err
				}
				s.Revoked = false // the issue as it was; its revocation is a later change
				d.Upserts = append(d.Upserts, s.Cert)
			case logRevok:
				d.Revokes = append(d.Revokes, id)
			default:
				return fmt.Errorf("damaged log entry %x: kind %d", k, v[0])
			}
		}
		if got := uint64(d.Records()); got != d.Next-d.From {
			return fmt.Errorf("log page %d holds %d changes, want %d: the log is damaged", p, got, d.Next-d.From)
		}
		data, err := is.opt.Signer.Sign(d, is.opt.Fleet)
		if err != nil {
			return err
		}
		pg = Page{Data: data, Immutable: d.Next == from+n, ETag: fmt.Sprintf(`"%x-log-%d-%d-%d"`, is.epoch, n, p, d.Next-from)}
		return nil
	})
	if err != nil {
		return Page{}, fmt.Errorf("issuer: log page %d: %w", p, err)
	}
	if pg.Immutable {
		is.docs.put(key, pg)
	}
	return pg, nil
}

// SnapshotPage returns the page of snapshot S after the ID after.
func (is *Issuer) SnapshotPage(snap uint64, after verify.CertID) (Page, error) {
	n := is.opt.PageSize
	key := fmt.Sprintf("snap/%d/%d/%s", n, snap, after)
	if pg, ok := is.docs.get(key); ok {
		return pg, nil
	}
	var pg Page
	err := is.db.View(func(tx *bolt.Tx) error {
		m := readMeta(tx)
		switch {
		case snap > m.head:
			return ErrNotYet
		case snap%uint64(n) != 0, snap < m.pruned:
			return ErrGone
		}
		var cutoff time.Time // certificates expired by change S are left out
		if snap > 0 {
			v := tx.Bucket(bucketLog).Get(u64(snap))
			if len(v) != logLen {
				return ErrGone
			}
			cutoff = time.Unix(0, int64(binary.BigEndian.Uint64(v[17:])))
		}
		d := is.doc(feed.KindSnapshot)
		d.Snapshot, d.After, d.Final = snap, after, true
		d.Upserts = make([]verify.Cert, 0, min(n, 1024))
		c := tx.Bucket(bucketCerts).Cursor()
		k, v := c.Seek(after[:])
		if k != nil && bytes.Equal(k, after[:]) {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			var s stored
			if err := decodeCert(k, v, &s); err != nil {
				return err
			}
			if s.Seq > snap || !s.NotAfter.After(cutoff) {
				continue
			}
			if len(d.Upserts) == n {
				d.Final = false
				break
			}
			s.Revoked = s.RevokeSeq != 0 && s.RevokeSeq <= snap
			d.Upserts = append(d.Upserts, s.Cert)
		}
		data, err := is.opt.Signer.Sign(d, is.opt.Fleet)
		if err != nil {
			return err
		}
		pg = Page{Data: data, Immutable: true, ETag: fmt.Sprintf(`"%x-snap-%d-%d-%s"`, is.epoch, n, snap, after)}
		return nil
	})
	if err != nil {
		return Page{}, fmt.Errorf("issuer: snapshot %d page after %s: %w", snap, after, err)
	}
	is.docs.put(key, pg)
	return pg, nil
}

// HistoryRetention is how long a certificate (and who it was issued to) is
// kept after it expires: the month of history (rule 7) and a day.
const HistoryRetention = 32 * 24 * time.Hour

// Prune drops log pages older than the retention, never past the current
// snapshot position, and the certificates (with their holders) whose
// history is over. It returns the position the log is pruned through.
func (is *Issuer) Prune() (uint64, error) {
	through, err := is.pruneLog()
	if err != nil {
		return 0, err
	}
	n, err := is.pruneCerts()
	if err != nil {
		return through, err
	}
	if n > 0 {
		is.opt.Logger.Info("pruned expired certificates", "count", n)
	}
	return through, nil
}

// pruneCerts deletes certificates expired longer than the history
// retention, with their holder and history entries; never one the current
// snapshot still includes, so that its pages stay as they were served.
func (is *Issuer) pruneCerts() (int, error) {
	limit := is.opt.Now().Add(-HistoryRetention)
	n := 0
	err := is.db.Update(func(tx *bolt.Tx) error {
		m := readMeta(tx)
		if snap := is.snapshotPos(m.head); snap > 0 {
			if v := tx.Bucket(bucketLog).Get(u64(snap)); len(v) == logLen {
				limit = minTime(limit, time.Unix(0, int64(binary.BigEndian.Uint64(v[17:]))))
			}
		}
		certs, holders, persons := tx.Bucket(bucketCerts), tx.Bucket(bucketHolders), tx.Bucket(bucketPersons)
		c := certs.Cursor()
		for k, v := c.First(); k != nil; {
			var s stored
			if err := decodeCert(k, v, &s); err != nil {
				return err
			}
			if !s.NotAfter.Before(limit) {
				k, v = c.Next()
				continue
			}
			h, err := getHolder(tx, s.ID)
			if err != nil {
				return err
			}
			if h.DocNumber != "" {
				if err := persons.Delete(personKey(h.DocNumber, s.NotBefore, s.ID)); err != nil {
					return err
				}
			}
			if err := holders.Delete(k); err != nil {
				return err
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
			k, v = c.Seek(s.ID[:]) // the cursor's position after a delete
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("issuer: prune certificates: %w", err)
	}
	return n, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (is *Issuer) pruneLog() (uint64, error) {
	now := is.opt.Now()
	n := uint64(is.opt.PageSize)
	var through uint64
	err := is.db.Update(func(tx *bolt.Tx) error {
		m := readMeta(tx)
		limit := is.snapshotPos(m.head)
		lg := tx.Bucket(bucketLog)
		c := lg.Cursor()
		through = m.pruned
		for k, v := c.First(); k != nil; k, v = c.First() {
			seq := binary.BigEndian.Uint64(k)
			at := time.Unix(0, int64(binary.BigEndian.Uint64(v[17:])))
			// Whole pages only, all of them old, and never change S
			// itself: a snapshot page needs its time.
			pageEnd := (seq + n - 1) / n * n
			if pageEnd >= limit || now.Sub(at) < is.opt.LogRetention {
				break
			}
			endV := lg.Get(u64(pageEnd))
			if endV == nil || now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(endV[17:])))) < is.opt.LogRetention {
				break
			}
			for s := seq; s <= pageEnd; s++ {
				if err := lg.Delete(u64(s)); err != nil {
					return err
				}
			}
			through = pageEnd
		}
		return tx.Bucket(bucketMeta).Put(keyPruned, u64(through))
	})
	if err != nil {
		return 0, fmt.Errorf("issuer: prune: %w", err)
	}
	return through, nil
}

// docCache keeps immutable signed pages, least recently used out first.
type docCache struct {
	mu    sync.Mutex
	max   int
	size  int
	ll    *list.List
	items map[string]*list.Element
}

type docEntry struct {
	key string
	pg  Page
}

func newDocCache(max int) *docCache {
	return &docCache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *docCache) get(key string) (Page, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*docEntry).pg, true
	}
	return Page{}, false
}

func (c *docCache) put(key string, pg Page) {
	if c.max <= 0 || len(pg.Data) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[key]; ok {
		return
	}
	c.items[key] = c.ll.PushFront(&docEntry{key, pg})
	c.size += len(pg.Data)
	for c.size > c.max {
		e := c.ll.Back()
		de := e.Value.(*docEntry)
		c.ll.Remove(e)
		delete(c.items, de.key)
		c.size -= len(de.pg.Data)
	}
}

// InsertSynthetic adds certificates with no holder straight to the state
// and the log, bypassing the issuance rules: for load tests and
// benchmarks that need a million certificates, never for service.
func (is *Issuer) InsertSynthetic(certs []verify.Cert) error {
	is.mu.Lock()
	defer is.mu.Unlock()
	now := is.opt.Now()
	err := is.db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketLog).FillPercent = 1.0
		for i := range certs {
			s := stored{Cert: certs[i]}
			s.Revoked = false
			if err := is.appendLog(tx, logIssue, &s, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("issuer: insert synthetic: %w", err)
	}
	return nil
}
