package flashproto

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// A file of packed groups (the delta design's base, the window design's
// runs): bucket "groups" maps the last ID of each group of up to GroupSize
// certificates to the group (ID 16 and record 49 each, ascending IDs);
// bucket "meta" holds "base" (JSON) and, for a run, "bloom" (a filter of
// its IDs).

// lookupGroups finds id's record in a group file.
func lookupGroups(tx *bolt.Tx, id []byte) ([]byte, bool) {
	k, v := tx.Bucket(bucketGroups).Cursor().Seek(id)
	if k == nil {
		return nil, false
	}
	n := len(v) / entryLen
	lo, hi := 0, n
	for lo < hi {
		m := (lo + hi) / 2
		if bytes.Compare(v[m*entryLen:m*entryLen+verify.CertIDLen], id) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < n && bytes.Equal(v[lo*entryLen:lo*entryLen+verify.CertIDLen], id) {
		return v[lo*entryLen+verify.CertIDLen : (lo+1)*entryLen], true
	}
	return nil, false
}

// A file being written is committed every commitGroups groups (about
// 256 KB) and synced every syncEvery commits, so that a grant's fsync,
// which the device serves after the writeback queued before it, never
// waits behind more than that.
const (
	commitGroups = 64
	syncEvery    = 1
)

// writeRun writes the entries next yields (ascending IDs) as a group file
// at path: into path.new (bbolt, no sync per commit), synced every
// syncEvery commits and at the end, then renamed over path, and the
// directory synced. meta gives the "base" record once the count is known.
// With bloomFor > 0 it also stores a filter of the IDs, sized for that
// many. It returns the entries written and the syncs issued.
func writeRun(path string, next func(yield func(verify.CertID, []byte) bool), meta func(n int) any, bloomFor int) (int, int64, error) {
	tmp := path + ".new"
	os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, NoGrowSync: true, NoFreelistSync: true, NoStatistics: true})
	if err != nil {
		return 0, 0, err
	}
	syncs := int64(1) // bbolt syncs a new file's first pages whatever NoSync says
	fail := func(err error) (int, int64, error) {
		db.Close()
		os.Remove(tmp)
		return 0, syncs, err
	}
	var bf bloom
	if bloomFor > 0 {
		bf = newBloom(bloomFor)
	}
	group := make([]byte, 0, GroupSize*entryLen)
	var groups [][]byte // a commit's worth
	var last []verify.CertID
	commits := 0
	n := 0
	flush := func(final bool) error {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketGroups)
			if err != nil {
				return err
			}
			b.FillPercent = 1.0
			for i, g := range groups {
				if err := b.Put(last[i][:], g); err != nil {
					return err
				}
			}
			if !final {
				return nil
			}
			mb, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			mj, err := json.Marshal(meta(n))
			if err != nil {
				return err
			}
			if bf != nil {
				if err := mb.Put(keyBloom, bf); err != nil {
					return err
				}
			}
			return mb.Put(keyMeta, mj)
		})
		if err != nil {
			return err
		}
		groups, last = groups[:0], last[:0]
		if commits++; commits%syncEvery == 0 || final {
			syncs++
			return db.Sync()
		}
		return nil
	}
	var lastID verify.CertID
	for id, rec := range next {
		group = append(group, id[:]...)
		group = append(group, rec...)
		if bf != nil {
			bf.add(id[:])
		}
		lastID = id
		n++
		if len(group) == GroupSize*entryLen {
			groups, last = append(groups, group), append(last, lastID)
			group = make([]byte, 0, GroupSize*entryLen)
			if len(groups) == commitGroups {
				if err := flush(false); err != nil {
					return fail(err)
				}
			}
		}
	}
	if len(group) > 0 {
		groups, last = append(groups, group), append(last, lastID)
	}
	if err := flush(true); err != nil {
		return fail(err)
	}
	if err := db.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, syncs, err
	}
	syncs++
	return n, syncs, syncDir(filepath.Dir(path))
}

var keyBloom = []byte("bloom")

// bloom is a blocked Bloom filter: each ID sets 8 bits of one 64-byte
// block, so a test reads one cache line; about 12 bits an ID, about 1%
// false positives.
type bloom []byte

func newBloom(n int) bloom {
	blocks := max(1, (n*12+511)/512)
	return make(bloom, blocks*64)
}

func bloomHash(id []byte) (uint64, uint64) {
	a, b := le64(id), le64(id[8:])
	h1 := (a ^ 0x243f6a8885a308d3) * 0x9e3779b97f4a7c15
	h2 := (b ^ h1>>31) * 0xbf58476d1ce4e5b9
	return h1 ^ h1>>29, h2 ^ h2>>32
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func (f bloom) add(id []byte) {
	h1, h2 := bloomHash(id)
	blk := f[(h1%uint64(len(f)/64))*64:][:64]
	for i := range 8 {
		bit := (h2 >> (9 * i)) & 511
		blk[bit/8] |= 1 << (bit % 8)
	}
}

func (f bloom) has(id []byte) bool {
	h1, h2 := bloomHash(id)
	blk := f[(h1%uint64(len(f)/64))*64:][:64]
	for i := range 8 {
		bit := (h2 >> (9 * i)) & 511
		if blk[bit/8]&(1<<(bit%8)) == 0 {
			return false
		}
	}
	return true
}
