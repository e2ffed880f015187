package seglog

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// crashFS is a file system in memory that knows what a power cut would
// keep: a file's data as of its last Sync, and the directory's entries as
// of the last SyncDir. Every change counts as an operation; at the
// operation numbered cutAt the power goes: that operation is issued, and
// it and every later one fail. crash then returns the file system a
// restart would find: the durable state, plus any of the directory
// changes not synced and, for each file, a prefix of its writes not
// synced, the last of them torn to a random subset of its 512-byte
// sectors (as a device may write a request's sectors in any order).
type crashFS struct {
	mu    sync.Mutex
	names map[string]*mfile // now
	dirOK map[string]*mfile // as of the last SyncDir
	dirOp []func(map[string]*mfile)
	ops   int
	cutAt int // 0: no cut
	cut   bool
	// failAt makes the operation numbered so fail with EIO, once, as a
	// bad device would; nothing of it is applied.
	failAt int
}

type mfile struct {
	data, durable []byte
	pending       []pwrite // since the last Sync
}

type pwrite struct {
	off int64
	b   []byte
}

var (
	errPowerCut = errors.New("power cut")
	errIO       = errors.New("input/output error")
)

func newCrashFS() *crashFS {
	return &crashFS{names: map[string]*mfile{}, dirOK: map[string]*mfile{}}
}

// op counts an operation and says whether it may go ahead; at the cut
// it is issued (apply is true) but reported failed.
func (c *crashFS) op() (apply bool, err error) {
	if c.cut {
		return false, errPowerCut
	}
	c.ops++
	if c.ops == c.failAt {
		return false, errIO
	}
	if c.ops == c.cutAt {
		c.cut = true
		return true, errPowerCut
	}
	return true, nil
}

func (c *crashFS) dirChange(fn func(map[string]*mfile)) {
	fn(c.names)
	c.dirOp = append(c.dirOp, fn)
}

func (c *crashFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.names[name]
	switch {
	case ok && flag&os.O_EXCL != 0:
		return nil, fs.ErrExist
	case !ok && flag&os.O_CREATE == 0:
		return nil, fs.ErrNotExist
	case !ok:
		apply, err := c.op()
		if apply {
			f = &mfile{}
			c.dirChange(func(m map[string]*mfile) { m[name] = f })
		}
		if err != nil {
			return nil, err
		}
	}
	return &cfile{fs: c, f: f, ro: flag&(os.O_WRONLY|os.O_RDWR) == 0}, nil
}

func (c *crashFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.names[oldpath]
	if !ok {
		return fs.ErrNotExist
	}
	apply, err := c.op()
	if apply {
		c.dirChange(func(m map[string]*mfile) { delete(m, oldpath); m[newpath] = f })
	}
	return err
}

func (c *crashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.names[name]; !ok {
		return fs.ErrNotExist
	}
	apply, err := c.op()
	if apply {
		c.dirChange(func(m map[string]*mfile) { delete(m, name) })
	}
	return err
}

func (c *crashFS) ReadDir(dir string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n := range c.names {
		if filepath.Dir(n) == filepath.Clean(dir) {
			out = append(out, filepath.Base(n))
		}
	}
	slices.Sort(out)
	return out, nil
}

func (c *crashFS) SyncDir(string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	apply, err := c.op()
	if apply && err == nil {
		c.dirOK = maps(c.names)
		c.dirOp = nil
	}
	return err
}

func maps(m map[string]*mfile) map[string]*mfile {
	out := make(map[string]*mfile, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// crash returns what a restart finds after the cut.
func (c *crashFS) crash(rng *rand.Rand) *crashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := maps(c.dirOK)
	for _, fn := range c.dirOp {
		if rng.IntN(2) == 0 { // each on its own: POSIX orders none of them
			fn(names)
		}
	}
	after := newCrashFS()
	kept := map[*mfile]*mfile{}
	for n, f := range names {
		g, ok := kept[f]
		if !ok {
			data := slices.Clone(f.durable)
			k := rng.IntN(len(f.pending) + 1)
			for i, w := range f.pending[:k] {
				b := w.b
				if i == k-1 {
					b = tear(rng, data, w)
				}
				data = writeAt(data, b, w.off)
			}
			g = &mfile{data: data, durable: slices.Clone(data)}
			kept[f] = g
		}
		after.names[n] = g
	}
	after.dirOK = maps(after.names)
	return after
}

// tear returns w's bytes with a random subset of its sectors left as
// they were in data.
func tear(rng *rand.Rand, data []byte, w pwrite) []byte {
	b := slices.Clone(w.b)
	for s := 0; s < len(b); s += 512 {
		if rng.IntN(2) == 0 {
			continue
		}
		for i := s; i < min(s+512, len(b)); i++ {
			if o := w.off + int64(i); o < int64(len(data)) {
				b[i] = data[o]
			} else {
				b[i] = 0
			}
		}
	}
	return b
}

func writeAt(data, b []byte, off int64) []byte {
	if end := off + int64(len(b)); end > int64(len(data)) {
		data = append(data, make([]byte, end-int64(len(data)))...)
	}
	copy(data[off:], b)
	return data
}

type cfile struct {
	fs     *crashFS
	f      *mfile
	ro     bool
	closed bool
}

func (f *cfile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if off >= int64(len(f.f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *cfile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.ro {
		return 0, fs.ErrPermission
	}
	apply, err := f.fs.op()
	if apply {
		f.f.data = writeAt(f.f.data, p, off)
		f.f.pending = append(f.f.pending, pwrite{off, slices.Clone(p)})
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *cfile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	apply, err := f.fs.op()
	if apply && err == nil {
		f.f.durable = slices.Clone(f.f.data)
		f.f.pending = nil
	}
	return err
}

func (f *cfile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return int64(len(f.f.data)), nil
}

func (f *cfile) Close() error { f.closed = true; return nil }
