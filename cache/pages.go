package cache

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
)

// The integrity check reads the file's pages itself instead of calling
// bbolt's tx.Check, for three reasons found with damaged files:
//
//   - tx.Check runs on a goroutine of its own, where a read through the
//     memory map at a bad address is a fatal "fault" whatever the caller
//     set with debug.SetPanicOnFault: `cache check` crashed on them;
//   - it follows page links without a guard against cycles, so a page
//     number damaged into one of its ancestors recurses until the stack
//     overflows, another fatal error;
//   - bbolt itself, when it opens a file for writing, reads the free list
//     before anything can check it: a damaged count there makes it
//     allocate without bound.
//
// So every file is walked here before bbolt is given it: each page read
// through a slice of exactly the file's size, each offset checked against
// it, each page reached at most once, keys in order (a page's first key
// its parent's key for it), the free list and the pages in use disjoint
// and together covering the file, and every record
// of this package's buckets decoded. Only a file that passes is opened
// with bbolt, which then meets nothing it did not write. (The agent's
// open of a cache leaves the certificates' tree out and has it walked
// beside the running gate, each lookup checking its own way down first:
// deferred.go.)
//
// The layout is bbolt 1.x's (format version 2, internal/common), in the
// machine's byte order, as bbolt reads it through unsafe casts.

const (
	pageHeaderSize   = 16 // id(8) flags(2) count(2) overflow(4)
	elemSize         = 16 // branch: pos(4) ksize(4) pgid(8); leaf: flags(4) pos(4) ksize(4) vsize(4)
	bucketHeaderSize = 16 // root page(8) sequence(8)
	metaOffset       = pageHeaderSize
	metaChecked      = 56 // the meta bytes the checksum covers
	metaSize         = 64

	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	// maxDepth bounds a B+tree's height: bbolt's trees are balanced, a
	// handful of levels for a million keys.
	maxDepth = 32
)

var ne = binary.NativeEndian

// meta is one of the file's two meta pages.
type meta struct {
	pageSize uint32
	root     uint64 // the root bucket's page
	freelist uint64
	hwm      uint64 // pages in use lie below
	txid     uint64
}

// readMeta decodes the meta page at off; ok is false unless its magic,
// version and checksum are bbolt's (bbolt's Meta.Validate).
func readMeta(data []byte, off uint64) (m meta, ok bool) {
	if off > uint64(len(data)) || uint64(len(data))-off < metaOffset+metaSize {
		return m, false
	}
	b := data[off+metaOffset : off+metaOffset+metaSize]
	h := fnv.New64a()
	h.Write(b[:metaChecked])
	if ne.Uint32(b[0:]) != boltMagic || ne.Uint32(b[4:]) != boltVersion || ne.Uint64(b[56:]) != h.Sum64() {
		return m, false
	}
	m.pageSize = ne.Uint32(b[8:])
	m.root = ne.Uint64(b[16:])
	m.freelist = ne.Uint64(b[32:])
	m.hwm = ne.Uint64(b[40:])
	m.txid = ne.Uint64(b[48:])
	return m, true
}

// pageSizeOf finds the page size as bbolt's Open does: from the first meta
// page, else from the second at each possible offset, else the OS's.
func pageSizeOf(data []byte) (uint64, bool) {
	size := uint64(len(data))
	const probe = 0x1000
	if size >= probe {
		if m, ok := readMeta(data, 0); ok {
			return uint64(m.pageSize), true
		}
	}
	readable := size >= probe
	for i := range 15 {
		pos := uint64(1024) << i
		if size < 1024 || pos >= size-1024 {
			break
		}
		readable = true
		if m, ok := readMeta(data, pos); ok {
			return uint64(m.pageSize), true
		}
	}
	if readable {
		return uint64(os.Getpagesize()), true
	}
	return 0, false
}

// metaOf picks the meta page bbolt would use: the one with the higher
// transaction ID if it is valid, else the other. A newest meta page that
// is not valid is how a power cut during its write looks, and bbolt's
// design: the file is as of the transaction before, which was the last
// one acknowledged.
func metaOf(path string, data []byte) (meta, uint64, error) {
	size := uint64(len(data))
	ps, ok := pageSizeOf(data)
	if !ok {
		if size < 1024 {
			return meta{}, 0, &CorruptError{Path: path, Kind: Truncated, Detail: fmt.Sprintf("%d bytes, too short for a bbolt file", size), Problems: 1}
		}
		return meta{}, 0, damaged(path, 0, "neither meta page is valid: not a bbolt file, or both pages overwritten")
	}
	if ps < 1024 || ps > 1<<16 || ps&(ps-1) != 0 {
		return meta{}, 0, damaged(path, 0, "page size %d", ps)
	}
	if size < 2*ps {
		return meta{}, 0, &CorruptError{Path: path, Kind: Truncated, Detail: fmt.Sprintf("%d bytes, shorter than two pages of %d", size, ps), Problems: 1}
	}
	m0, ok0 := readMeta(data, 0)
	m1, ok1 := readMeta(data, ps)
	a, okA, b, okB := m0, ok0, m1, ok1
	if m1.txid > m0.txid {
		a, okA, b, okB = m1, ok1, m0, ok0
	}
	var m meta
	switch {
	case okA:
		m = a
	case okB:
		m = b
	default:
		return meta{}, 0, damaged(path, 0, "neither meta page is valid")
	}
	switch {
	case uint64(m.pageSize) != ps:
		return meta{}, 0, damaged(path, 0, "meta page says pages of %d bytes, the file has %d", m.pageSize, ps)
	case m.hwm < 3 || m.hwm > size/ps:
		if m.hwm > size/ps {
			return meta{}, 0, &CorruptError{Path: path, Kind: Truncated, Page: size / ps,
				Detail: fmt.Sprintf("%d bytes, but its pages run to page %d", size, m.hwm-1), Problems: 1}
		}
		return meta{}, 0, damaged(path, 0, "meta page counts %d pages", m.hwm)
	case m.root < 2 || m.root >= m.hwm:
		return meta{}, 0, damaged(path, 0, "root page %d out of bounds (%d pages)", m.root, m.hwm)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.hwm):
		return meta{}, 0, damaged(path, 0, "free list page %d out of bounds (%d pages)", m.freelist, m.hwm)
	}
	return m, ps, nil
}

// recordCheck decodes one record of a bucket and says what is wrong with
// it; nil when it is well-formed.
type recordCheck func(k, v []byte) error

// walk is one pass over a file from one meta page.
type walk struct {
	path   string
	data   []byte
	ps     uint64
	m      meta
	used   []uint64 // a bit per page reached
	checks map[string]recordCheck
	// collect, when set, sees every record that decoded.
	collect func(bucket string, k, v []byte)
	// lenient walks on past keys out of order (a salvage reads what it
	// can; a check stops at the page).
	lenient bool
	// shallow names the bucket whose tree is left out (Open's quick check:
	// see deferred.go); shallowRoot is its root page once found. The pages
	// under it are unknown, so the walk does not ask that every page be in
	// use or free.
	shallow     string
	shallowRoot uint64
	// quit, once closed, ends the walk early (the cache is being closed).
	quit <-chan struct{}

	// buckets found at the top level: name → sequence.
	buckets map[string]uint64

	problems    int
	firstPage   uint64
	firstDetail string
}

func newWalk(path string, data []byte, ps uint64, m meta, checks map[string]recordCheck) *walk {
	return &walk{path: path, data: data, ps: ps, m: m, used: make([]uint64, (m.hwm+63)/64),
		checks: checks, buckets: map[string]uint64{}}
}

func (w *walk) fail(page uint64, format string, a ...any) {
	w.problems++
	if w.problems == 1 {
		w.firstPage, w.firstDetail = page, fmt.Sprintf("page %d: ", page)+fmt.Sprintf(format, a...)
	}
}

func (w *walk) err() error {
	if w.problems == 0 {
		return nil
	}
	return &CorruptError{Path: w.path, Kind: Damaged, Page: w.firstPage, Detail: w.firstDetail, Problems: w.problems}
}

func (w *walk) isUsed(id uint64) bool { return w.used[id/64]&(1<<(id%64)) != 0 }
func (w *walk) markUsed(id uint64)    { w.used[id/64] |= 1 << (id % 64) }

// all checks the whole file: the tree from the root bucket, the free list,
// and that every page is in one of them.
func (w *walk) all() {
	w.markUsed(0)
	w.markUsed(1)
	w.tree(w.m.root, nil, nil, 0, nil)
	free := make([]uint64, len(w.used))
	if w.m.freelist != noFreelist {
		w.freelist(free)
	}
	if w.shallowRoot != 0 {
		return
	}
	for id := uint64(2); id < w.m.hwm; id++ {
		if !w.isUsed(id) && free[id/64]&(1<<(id%64)) == 0 {
			w.fail(id, "neither in use nor free")
		}
	}
}

// quitting says whether quit is closed; a nil quit never is.
func (w *walk) quitting() bool {
	select {
	case <-w.quit:
		return true
	default:
		return false
	}
}

// page returns the bytes of page id and its overflow pages, after checking
// its header (header) and that no other link has reached them.
func (w *walk) page(id uint64, what string) (p []byte, flags, count uint16, ok bool) {
	p, flags, count, ok = w.header(id, what)
	if !ok {
		return nil, 0, 0, false
	}
	over := uint64(len(p))/w.ps - 1
	for i := id; i <= id+over; i++ {
		if w.isUsed(i) {
			w.fail(id, "reached twice (a cycle, or two links to one page)")
			return nil, 0, 0, false
		}
	}
	for i := id; i <= id+over; i++ {
		w.markUsed(i)
	}
	return p, flags, count, true
}

// header returns the bytes of page id and its overflow pages, after
// checking its header: its place in the file, its own number, and its
// overflow pages inside the file.
func (w *walk) header(id uint64, what string) (p []byte, flags, count uint16, ok bool) {
	if id < 2 || id >= w.m.hwm {
		w.fail(id, "%s link out of bounds (%d pages)", what, w.m.hwm)
		return nil, 0, 0, false
	}
	off := id * w.ps
	h := w.data[off : off+pageHeaderSize]
	if got := ne.Uint64(h); got != id {
		w.fail(id, "%s page says it is page %d", what, got)
		return nil, 0, 0, false
	}
	flags, count = ne.Uint16(h[8:]), ne.Uint16(h[10:])
	over := uint64(ne.Uint32(h[12:]))
	if over >= w.m.hwm-id {
		w.fail(id, "%d overflow pages run past the last page", over)
		return nil, 0, 0, false
	}
	return w.data[off : off+(over+1)*w.ps], flags, count, true
}

// fits checks that the count elements of tree page id fit in it.
func (w *walk) fits(id uint64, p []byte, count uint16) bool {
	if !elemsFit(p, count) {
		w.fail(id, "%d elements do not fit the page", count)
		return false
	}
	return true
}

// elems checks that count element headers fit in p after the page header.
func elemsFit(p []byte, count uint16) bool {
	return uint64(pageHeaderSize)+uint64(count)*elemSize <= uint64(len(p))
}

// span returns p[at+pos : at+pos+n], or false when it leaves p.
func span(p []byte, at, pos, n uint64) ([]byte, bool) {
	start := at + pos
	if start < at || start > uint64(len(p)) || n > uint64(len(p))-start {
		return nil, false
	}
	return p[start : start+n], true
}

// inBucket is the top-level bucket a page belongs to, and the check of
// its records; nil for the root bucket's pages.
type inBucket struct {
	name  string
	check recordCheck
}

// tree checks the page id and everything under it: a branch's children, a
// leaf's records; every key in [lo, hi) (nil: unbounded) and in order.
func (w *walk) tree(id uint64, lo, hi []byte, depth int, bucket *inBucket) {
	if depth > maxDepth {
		w.fail(id, "tree deeper than %d levels", maxDepth)
		return
	}
	if w.quitting() {
		return
	}
	p, flags, count, ok := w.page(id, "tree")
	if !ok || !w.fits(id, p, count) {
		return
	}
	switch flags {
	case branchPageFlag:
		if !w.branch(id, p, count, lo, hi) {
			return
		}
		for i := range uint64(count) {
			k, kid, next := child(p, i, count, hi)
			if w.lenient {
				w.tree(kid, nil, nil, depth+1, bucket)
			} else {
				w.tree(kid, k, next, depth+1, bucket)
			}
		}
	case leafPageFlag:
		w.leaf(id, p, count, lo, hi, depth, bucket)
	default:
		w.fail(id, "tree page of type %#x", flags)
	}
}

// branch checks the keys of a branch page: each inside the page, in
// order, and all in [lo, hi). False means the page's children are not to
// be followed; a lenient walk follows them unless a key lies outside the
// page (it has counted the keys out of order).
func (w *walk) branch(id uint64, p []byte, count uint16, lo, hi []byte) bool {
	if count == 0 {
		w.fail(id, "branch page with no children")
		return false
	}
	var prev []byte
	for i := range uint64(count) {
		at := pageHeaderSize + i*elemSize
		pos, ksize := uint64(ne.Uint32(p[at:])), uint64(ne.Uint32(p[at+4:]))
		k, ok := span(p, at, pos, ksize)
		if !ok {
			w.fail(id, "key %d lies outside the page", i)
			return false
		}
		if !w.inOrder(id, i, k, prev, lo, hi, i+1 == uint64(count)) && !w.lenient {
			return false
		}
		prev = k
	}
	return true
}

// child returns the key and the page of a checked branch page's child i,
// and the key that bounds the child above (the next key, or hi for the
// last child).
func child(p []byte, i uint64, count uint16, hi []byte) (k []byte, kid uint64, next []byte) {
	at := pageHeaderSize + i*elemSize
	k = p[at+uint64(ne.Uint32(p[at:])):][:ne.Uint32(p[at+4:])]
	kid, next = ne.Uint64(p[at+8:]), hi
	if i+1 < uint64(count) {
		at += elemSize
		next = p[at+uint64(ne.Uint32(p[at:])):][:ne.Uint32(p[at+4:])]
	}
	return k, kid, next
}

// inOrder checks key i of a page against the one before it (prev, nil
// for none) and the bounds its parent sets: the first key against lo,
// and against hi the last key (last), which is enough once every key is
// above the one before it, or every key when the walk is lenient (it
// judges each key on its own). This is the open's hottest loop: a million
// certificates are a million calls.
//
// The first key must be its parent's key for the page, not only sort at
// or after it: bbolt keeps them equal, and finds a page in its parent by
// that key when it writes the page again. A first key changed on the disk
// (still in order) would make it add the page to its parent a second
// time, beside the old entry, whose page it then frees: a page free and
// in use (found by TestDamagedFilesAreRefusedOrWhole). A lenient walk (a
// salvage, which writes nothing back) only asks for the order.
func (w *walk) inOrder(id, i uint64, k, prev, lo, hi []byte, last bool) bool {
	switch {
	case i == 0 && lo != nil && compareKeys(k, lo) < 0:
		w.fail(id, "first key sorts before its parent's")
	case i == 0 && lo != nil && !w.lenient && compareKeys(k, lo) != 0:
		w.fail(id, "first key is not its parent's key for the page")
	case prev != nil && compareKeys(prev, k) >= 0:
		w.fail(id, "key %d out of order", i)
	case hi != nil && (last || w.lenient) && compareKeys(k, hi) >= 0:
		w.fail(id, "key %d sorts after the parent's next key", i)
	default:
		return true
	}
	return false
}

// compareKeys is bytes.Compare, quicker for the certificates' 16-byte
// IDs: two loads and two comparisons instead of a call.
func compareKeys(a, b []byte) int {
	if len(a) != 16 || len(b) != 16 {
		return bytes.Compare(a, b)
	}
	be := binary.BigEndian
	if x, y := be.Uint64(a), be.Uint64(b); x != y {
		return cmp.Compare(x, y)
	}
	return cmp.Compare(be.Uint64(a[8:]), be.Uint64(b[8:]))
}

// leaf checks the records of a leaf page (or of an inline bucket's page,
// id then being the page that holds it).
func (w *walk) leaf(id uint64, p []byte, count uint16, lo, hi []byte, depth int, bucket *inBucket) {
	var prev []byte
	for i := range uint64(count) {
		at := pageHeaderSize + i*elemSize
		eflags := ne.Uint32(p[at:])
		pos, ksize, vsize := uint64(ne.Uint32(p[at+4:])), uint64(ne.Uint32(p[at+8:])), uint64(ne.Uint32(p[at+12:]))
		kv, ok := span(p, at, pos, ksize+vsize)
		if !ok || ksize+vsize < ksize {
			w.fail(id, "record %d lies outside the page", i)
			return
		}
		k, v := kv[:ksize:ksize], kv[ksize:]
		if !w.inOrder(id, i, k, prev, lo, hi, i+1 == uint64(count)) {
			if !w.lenient {
				return
			}
			continue // this key is not to be trusted; the next is judged against the last good one
		}
		prev = k
		switch {
		case eflags&^bucketLeafFlag != 0:
			w.fail(id, "record %d has flags %#x", i, eflags)
		case bucket == nil && eflags != bucketLeafFlag:
			w.fail(id, "a record %q at the top level, where only buckets belong", k)
		case bucket == nil:
			w.bucket(id, string(k), v, depth)
		case eflags != 0:
			w.fail(id, "bucket %q holds a bucket %q", bucket.name, k)
		default:
			if err := bucket.check(k, v); err != nil {
				w.fail(id, "bucket %s: %v", bucket.name, err)
			} else if w.collect != nil {
				w.collect(bucket.name, k, v)
			}
		}
	}
}

// bucket checks a top-level bucket: its header, and its pages or the page
// it holds inline.
func (w *walk) bucket(id uint64, name string, v []byte, depth int) {
	check, ok := w.checks[name]
	if !ok {
		w.fail(id, "bucket %q is not one of this file's", name)
		return
	}
	in := &inBucket{name, check}
	if len(v) < bucketHeaderSize {
		w.fail(id, "bucket %q: header of %d bytes", name, len(v))
		return
	}
	root, seq := ne.Uint64(v), ne.Uint64(v[8:])
	w.buckets[name] = seq
	if root != 0 {
		if len(v) != bucketHeaderSize {
			w.fail(id, "bucket %q: header of %d bytes", name, len(v))
			return
		}
		if name == w.shallow {
			if root < 2 || root >= w.m.hwm {
				w.fail(id, "bucket %q: root page %d out of bounds (%d pages)", name, root, w.m.hwm)
				return
			}
			w.shallowRoot = root
			return
		}
		w.tree(root, nil, nil, depth+1, in)
		return
	}
	// An inline bucket: a leaf page inside the value.
	ip := v[bucketHeaderSize:]
	if len(ip) < pageHeaderSize {
		w.fail(id, "bucket %q: inline page of %d bytes", name, len(ip))
		return
	}
	flags, count := ne.Uint16(ip[8:]), ne.Uint16(ip[10:])
	if flags != leafPageFlag || !elemsFit(ip, count) {
		w.fail(id, "bucket %q: inline page of type %#x with %d records", name, flags, count)
		return
	}
	w.leaf(id, ip, count, nil, nil, depth+1, in)
}

// freelist reads the free list into free, checking each page number.
func (w *walk) freelist(free []uint64) {
	id := w.m.freelist
	p, flags, count, ok := w.page(id, "free list")
	if !ok {
		return
	}
	if flags != freelistPageFlag {
		w.fail(id, "free list page of type %#x", flags)
		return
	}
	body := p[pageHeaderSize:]
	n := uint64(count)
	if count == 0xFFFF { // the count did not fit: it is the first entry
		if len(body) < 8 {
			w.fail(id, "free list too short")
			return
		}
		n, body = ne.Uint64(body), body[8:]
	}
	if n > uint64(len(body))/8 {
		w.fail(id, "free list of %d pages does not fit its %d bytes", n, len(body))
		return
	}
	for i := range n {
		f := ne.Uint64(body[i*8:])
		switch {
		case f < 2 || f >= w.m.hwm:
			w.fail(id, "free page %d out of bounds (%d pages)", f, w.m.hwm)
		case free[f/64]&(1<<(f%64)) != 0:
			w.fail(id, "page %d freed twice", f)
		case w.isUsed(f):
			w.fail(f, "free and in use")
		default:
			free[f/64] |= 1 << (f % 64)
		}
	}
}
