package flashproto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/verify"
)

// DeltaCerts keeps the certificates in two parts:
//
//   - the base, certs.db: a bbolt file written once, in ID order, and
//     never changed: its "groups" bucket maps the last ID of each group of
//     up to GroupSize certificates to the group's records, packed (ID 16,
//     record 49 each, ascending), so that a 4 KB page holds one group and
//     the file stays within a few percent of the raw records; its "meta"
//     bucket holds the feed's cursor and state it reflects and the delta
//     LSN it covers;
//   - the delta: every feed batch since the base was written, one record
//     each in a Log (delta.*.log) written with one fdatasync, and indexed
//     in memory (ID → record), rebuilt from the log at open.
//
// A lookup reads the index, then the base. Every Period (or at the first
// maintenance after), the base is rebuilt: the old base and the delta
// merged in ID order into a new file, certificates expired more than the
// retention ago left out, synced, renamed over certs.db; then the delta's
// segments are released. Expired certificates are never deleted in place.
type DeltaCerts struct {
	*delta
	dir    string
	period time.Duration
	base   *bolt.DB
	meta   baseMeta
	// Syncs counts the base's fsyncs (the log counts its own).
	syncs int64
}

// baseMeta is what a base says of itself.
type baseMeta struct {
	Covers uint64          `json:"covers"` // the last delta LSN merged in
	Cursor uint64          `json:"cursor"`
	Feed   cache.FeedState `json:"feed"`
	Built  time.Time       `json:"built"` // simulated time of the rebuild
	Certs  int             `json:"certs"`
}

// GroupSize is the most certificates one base value holds: 62 × 65 bytes
// and bbolt's 48 bytes of page header, element and key fit one 4 KB page.
const GroupSize = 62

const (
	recordLen  = 1 + 8 + 8 + verify.KeyLen
	entryLen   = verify.CertIDLen + recordLen
	flagRevoke = 1 << 0
	flagNoKey  = 1 << 1
	kindBatch  = 1
)

var (
	bucketGroups = []byte("groups")
	bucketMeta   = []byte("meta")
	keyMeta      = []byte("base")
)

// OpenDeltaCerts opens the certificate store in dir: the base read only,
// the delta log replayed into the index.
func OpenDeltaCerts(dir string, segBytes int64, period time.Duration) (*DeltaCerts, error) {
	d := &DeltaCerts{dir: dir, period: period}
	os.Remove(filepath.Join(dir, "certs.db.new")) // a rebuild cut short
	if err := d.openBase(); err != nil {
		return nil, err
	}
	var err error
	if d.delta, err = openDelta(dir, segBytes, d.meta.Covers, d.meta.Cursor, d.meta.Feed); err != nil {
		d.closeBase()
		return nil, err
	}
	return d, nil
}

func (d *DeltaCerts) openBase() error {
	path := filepath.Join(d.dir, "certs.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, NoStatistics: true})
	if err != nil {
		return err
	}
	var m baseMeta
	err = db.View(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMeta)
		if mb == nil || tx.Bucket(bucketGroups) == nil {
			return fmt.Errorf("%s: not a base", path)
		}
		return json.Unmarshal(mb.Get(keyMeta), &m)
	})
	if err != nil {
		db.Close()
		return err
	}
	d.base, d.meta = db, m
	return nil
}

func (d *DeltaCerts) closeBase() error {
	if d.base == nil {
		return nil
	}
	err := d.base.Close()
	d.base = nil
	return err
}

// record returns what the store holds for id: from the index, else the base.
func (d *DeltaCerts) record(id verify.CertID) ([recordLen]byte, bool, error) {
	if r, ok := d.idx.get(id[:]); ok {
		return [recordLen]byte(r), true, nil
	}
	if d.base == nil {
		return [recordLen]byte{}, false, nil
	}
	var rec [recordLen]byte
	found := false
	err := d.base.View(func(tx *bolt.Tx) error {
		r, ok := lookupGroups(tx, id[:])
		if ok {
			copy(rec[:], r)
			found = true
		}
		return nil
	})
	return rec, found, err
}

// Lookup finds a certificate as cache.Cache.Lookup does.
func (d *DeltaCerts) Lookup(id verify.CertID) (verify.Record, bool, error) {
	rec, ok, err := d.record(id)
	if err != nil || !ok || rec[0]&flagNoKey != 0 {
		return verify.Record{}, false, err
	}
	return decodeRecord(id, rec), true, nil
}

func decodeRecord(id verify.CertID, rec [recordLen]byte) verify.Record {
	r := verify.Record{}
	r.ID = id
	r.Revoked = rec[0]&flagRevoke != 0
	r.NotBefore = time.Unix(int64(binary.BigEndian.Uint64(rec[1:])), 0).UTC()
	r.NotAfter = time.Unix(int64(binary.BigEndian.Uint64(rec[9:])), 0).UTC()
	copy(r.Key[:], rec[17:])
	return r
}

func putRecord(v []byte, c *verify.Cert, flags byte) {
	if c.Revoked {
		flags |= flagRevoke
	}
	v[0] = flags
	binary.BigEndian.PutUint64(v[1:], uint64(c.NotBefore.Unix()))
	binary.BigEndian.PutUint64(v[9:], uint64(c.NotAfter.Unix()))
	copy(v[17:], c.Key[:])
}

// Apply writes a feed batch as one delta record, with the semantics of
// cache.Cache.Apply: a batch held already is skipped, a gap refused, a
// revocation final (also one that comes before its certificate).
func (d *DeltaCerts) Apply(b *cache.Batch) (skipped bool, err error) {
	return d.apply(b, d.record)
}

// Load writes a full sync (certificates in ascending ID order) as a new
// base, covering the whole delta.
func (d *DeltaCerts) Load(pages func(yield func([]verify.Cert) bool), cursor uint64, fs cache.FeedState, now time.Time) error {
	fs.Cursor = cursor
	next := func(yield func(id verify.CertID, rec []byte) bool) {
		var r [recordLen]byte
		for certs := range pages {
			for i := range certs {
				putRecord(r[:], &certs[i], 0)
				if !yield(certs[i].ID, r[:]) {
					return
				}
			}
		}
	}
	if err := d.writeBase(next, baseMeta{Covers: d.log.Next() - 1, Cursor: cursor, Feed: fs, Built: now}); err != nil {
		return err
	}
	d.idx = newIndex()
	d.cursor, d.fs = cursor, fs
	return d.log.Release(d.meta.Covers)
}

// Maintain rebuilds the base when Period has passed since the last.
func (d *DeltaCerts) Maintain(now time.Time, retention time.Duration) error {
	if now.Sub(d.meta.Built) < d.period {
		return nil
	}
	return d.Rebuild(now, retention)
}

// Rebuild merges the base and the delta into a new base, leaving out the
// certificates whose not_after lies more than retention before now.
func (d *DeltaCerts) Rebuild(now time.Time, retention time.Duration) error {
	cut := now.Add(-retention).Unix()
	ids := d.idx.each() // entries in ID order
	slices.SortFunc(ids, func(a, b int) int { return bytes.Compare(d.idx.id(a), d.idx.id(b)) })
	covers := d.log.Next() - 1
	merged := func(yield func(id verify.CertID, rec []byte) bool) {
		keep := func(id verify.CertID, rec []byte) bool {
			if int64(binary.BigEndian.Uint64(rec[9:])) < cut {
				return true // expired longer than the retention ago: left out
			}
			return yield(id, rec)
		}
		i := 0
		if d.base != nil {
			tx, err := d.base.Begin(false)
			if err != nil {
				return
			}
			defer tx.Rollback()
			c := tx.Bucket(bucketGroups).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				for o := 0; o+entryLen <= len(v); o += entryLen {
					bid := verify.CertID(v[o:])
					for i < len(ids) && bytes.Compare(d.idx.id(ids[i]), bid[:]) < 0 {
						if !keep(verify.CertID(d.idx.id(ids[i])), d.idx.rec(ids[i])) {
							return
						}
						i++
					}
					if i < len(ids) && string(d.idx.id(ids[i])) == string(bid[:]) {
						continue // the delta's record replaces the base's
					}
					if !keep(bid, v[o+verify.CertIDLen:o+entryLen]) {
						return
					}
				}
			}
		}
		for ; i < len(ids); i++ {
			if !keep(verify.CertID(d.idx.id(ids[i])), d.idx.rec(ids[i])) {
				return
			}
		}
	}
	fs := d.fs
	fs.Cursor = d.cursor
	if err := d.writeBase(merged, baseMeta{Covers: covers, Cursor: d.cursor, Feed: fs, Built: now}); err != nil {
		return err
	}
	d.idx.compact(covers)
	return d.log.Release(covers)
}

// writeBase writes the entries next yields (ascending IDs) as the new
// base, renamed over certs.db, and opens it.
func (d *DeltaCerts) writeBase(next func(yield func(verify.CertID, []byte) bool), m baseMeta) error {
	// next reads the old base: it stays open (its file renamed over, its
	// pages still mapped) until the new one is in place.
	_, syncs, err := writeRun(filepath.Join(d.dir, "certs.db"), next, func(n int) any { m.Certs = n; return &m }, 0)
	d.syncs += syncs
	if err != nil {
		return err
	}
	if err := d.closeBase(); err != nil {
		return err
	}
	return d.openBase()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Delta is the number of certificates in the index.
func (d *DeltaCerts) Delta() int { return d.idx.len() }

// Syncs counts the fsyncs of the base and the delta log.
func (d *DeltaCerts) Syncs() int64 { return d.syncs + d.log.Stats().Syncs }

// Sizes is the bytes of the base and of the delta log.
func (d *DeltaCerts) Sizes() (base, delta int64) {
	if fi, err := os.Stat(filepath.Join(d.dir, "certs.db")); err == nil {
		base = fi.Size()
	}
	return base, d.log.Stats().Bytes
}

// Close closes the files.
func (d *DeltaCerts) Close() error {
	return errors.Join(d.closeBase(), d.log.Close())
}
