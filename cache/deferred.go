package cache

import (
	"bytes"
	"sync"
	"sync/atomic"
	"syscall"
)

// A certificate cache is checked in two steps, so that a gate with
// millions of certificates is ready in milliseconds (BenchmarkColdStart5M)
// and still never gives bbolt a page it did not write:
//
//   - Open checks everything but the certificates' tree (meta pages, free
//     list, the root and meta buckets whole, the certificate bucket's
//     header): a few pages whatever the file's size.
//   - The certificates' tree is checked in full by a walk that Open starts
//     in the background (deferredCheck.run), over the same map. Until it
//     has passed, nothing writes to the file (update waits for it, and so
//     do the reads that go through every certificate: view), so the file
//     is the one the walk reads; and a lookup first walks down the tree
//     itself to the leaf that holds its key (deferredCheck.descend),
//     checking each page on the way that no lookup has checked yet, before
//     bbolt reads those pages.
//
// When the walk finds damage the cache is not used any more: every lookup
// and write returns the *CorruptError, and Checked returns it, for the
// agent to move the file aside and rebuild it, as when Open finds damage.
type deferredCheck struct {
	path string
	ps   uint64
	m    meta
	root uint64    // the tree's root page
	in   *inBucket // its bucket, and the check of its records

	// mu is held for reading by a lookup's descent through data, and for
	// writing to unmap data once the walk is over (data is then nil).
	mu   sync.RWMutex
	data []byte
	// seq maps the same file for the walk, read ahead (data is mapped
	// for random access); nil when the walk reads data.
	seq []byte

	// seen has a bit for each page a lookup's descent has checked.
	seen []atomic.Uint64

	done chan struct{} // closed when the walk has ended, err then set
	err  error
	quit chan struct{} // closed by halt: the walk ends early
	once sync.Once
}

// newDeferredCheck takes over the map data of a file whose quick check w
// passed, leaving out the tree of bucket w.shallow.
func newDeferredCheck(path string, data []byte, w *walk) *deferredCheck {
	return &deferredCheck{path: path, data: data, ps: w.ps, m: w.m,
		root: w.shallowRoot, in: &inBucket{w.shallow, recordChecks[w.shallow]},
		seen: make([]atomic.Uint64, (w.m.hwm+63)/64), done: make(chan struct{}), quit: make(chan struct{})}
}

// halt ends the walk early and waits for it: the cache is being closed.
func (d *deferredCheck) halt() {
	d.once.Do(func() { close(d.quit) })
	<-d.done
}

// holdChecks, when set, is waited on before each walk starts: a test's
// way to look up while the walk has not ended.
var holdChecks atomic.Pointer[chan struct{}]

// run walks the whole file, as CheckFile does, then unmaps it.
func (d *deferredCheck) run() {
	if hold := holdChecks.Load(); hold != nil {
		select {
		case <-*hold:
		case <-d.quit:
		}
	}
	mapped := d.data
	if d.seq != nil {
		mapped = d.seq
	}
	w := newWalk(d.path, mapped, d.ps, d.m, recordChecks)
	w.quit = d.quit
	err := safely(d.path, func() error {
		w.all()
		return w.err()
	})
	if err == nil && w.quitting() {
		err = errClosed
	}
	d.err = err
	d.unmap()
	close(d.done)
}

// unmap releases the file's map, once no descent reads it.
func (d *deferredCheck) unmap() {
	d.mu.Lock()
	defer d.mu.Unlock()
	syscall.Munmap(d.data)
	d.data = nil
	if d.seq != nil {
		syscall.Munmap(d.seq)
		d.seq = nil
	}
}

// wait returns the walk's outcome once it has one.
func (d *deferredCheck) wait() error {
	<-d.done
	return d.err
}

// found is the walk's outcome once it has ended, nil before: what every
// lookup returns from then on, whatever it would read.
func (d *deferredCheck) found() error {
	select {
	case <-d.done:
		return d.err
	default:
		return nil
	}
}

// descendSeek checks the pages a cursor's Seek(key) reads: those down to
// the leaf where key belongs, and when key sorts after every key of that
// leaf, those down to the next leaf, where Seek goes on to.
func (d *deferredCheck) descendSeek(key []byte) error {
	for range 2 {
		after, next, err := d.descend(key)
		if err != nil || !after || next == nil {
			return err
		}
		key = next
	}
	return nil
}

// descend checks the pages from the tree's root down to the leaf where key
// belongs, each once. It returns the walk's outcome if the walk is over.
// It runs inside safely, as the lookup that calls it. after reports
// whether key sorts after every key of the leaf, and next is then the
// first key of the next leaf (nil at the tree's end): a copy.
func (d *deferredCheck) descend(key []byte) (after bool, next []byte, err error) {
	select {
	case <-d.done:
		return false, nil, d.err
	default:
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.data == nil { // the walk ended meanwhile
		return false, nil, d.err
	}
	w := walk{path: d.path, data: d.data, ps: d.ps, m: d.m}
	id, lo, hi := d.root, []byte(nil), []byte(nil)
	for depth := 0; ; depth++ {
		if depth > maxDepth {
			w.fail(id, "tree deeper than %d levels", maxDepth)
			return false, nil, w.err()
		}
		p, flags, count, ok := w.header(id, "tree")
		if !ok || !w.fits(id, p, count) {
			return false, nil, w.err()
		}
		seen := d.seen[id/64].Load()&(1<<(id%64)) != 0
		switch flags {
		case branchPageFlag:
			if !seen && !w.branch(id, p, count, lo, hi) {
				return false, nil, w.err()
			}
		case leafPageFlag:
			if !seen {
				if w.leaf(id, p, count, lo, hi, depth, d.in); w.problems > 0 {
					return false, nil, w.err()
				}
			}
		default:
			w.fail(id, "tree page of type %#x", flags)
			return false, nil, w.err()
		}
		d.seen[id/64].Or(1 << (id % 64))
		if flags == leafPageFlag {
			if count > 0 {
				at := pageHeaderSize + uint64(count-1)*elemSize
				last := p[at+uint64(ne.Uint32(p[at+4:])):][:ne.Uint32(p[at+8:])]
				after = compareKeys(key, last) > 0
			}
			return after, bytes.Clone(hi), nil
		}
		lo, id, hi = child(p, search(p, count, key), count, hi)
	}
}

// search returns the child of a checked branch page under which key
// belongs: the last whose key is not above it, or the first.
func search(p []byte, count uint16, key []byte) uint64 {
	lo, hi := uint64(0), uint64(count) // the answer is in [lo, hi)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		k, _, _ := child(p, mid, count, nil)
		if compareKeys(k, key) <= 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
