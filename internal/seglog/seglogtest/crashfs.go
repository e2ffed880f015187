// Package seglogtest is a model of a file system under a power cut, for
// tests of internal/seglog and of what is built on it.
package seglogtest

import (
	"errors"
	"gateagent/internal/seglog"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// CrashFS is a file system in memory that knows what a power cut would
// keep: a file's data as of its last Sync, and the directory's entries as
// of the last SyncDir. Every change counts as an operation; at the
// operation numbered CutAt the power goes: that operation is issued, and
// it and every later one fail. Crash then returns the file system a
// restart would find: the durable state, plus any of the directory
// changes not synced and, for each file, a prefix of its writes not
// synced, the last of them torn to a random subset of its 512-byte
// sectors (as a device may write a request's sectors in any order).
type CrashFS struct {
	mu    sync.Mutex
	names map[string]*mfile // now
	dirOK map[string]*mfile // as of the last SyncDir
	dirOp []func(map[string]*mfile)
	ops   int
	// CutAt is the operation at which the power goes (0: never).
	CutAt int
	cut   bool
	// FailAt makes the operation numbered so fail with ErrIO, once, as a
	// bad device would; nothing of it is applied.
	FailAt int
}

// Ops is how many changing operations the file system has seen.
func (c *CrashFS) Ops() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// Tick counts a change to another file on the same device (a bbolt
// commit beside the log) as an operation: it fails, and the change must
// not be made, once the power is gone (from the cut on).
func (c *CrashFS) Tick() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.op()
	return err
}

// WriteFile puts a file named name holding data, durable at once.
func (c *CrashFS) WriteFile(name string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := &mfile{data: slices.Clone(data), durable: slices.Clone(data)}
	c.names[name], c.dirOK[name] = f, f
}

// ReadFile returns the bytes of the file named name as they are now.
func (c *CrashFS) ReadFile(name string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.names[name]
	if !ok {
		return nil, false
	}
	return slices.Clone(f.data), true
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
	ErrPowerCut = errors.New("power cut")
	ErrIO       = errors.New("input/output error")
)

// NewCrashFS returns an empty file system with no cut planned.
func NewCrashFS() *CrashFS {
	return &CrashFS{names: map[string]*mfile{}, dirOK: map[string]*mfile{}}
}

// op counts an operation and says whether it may go ahead; at the cut
// it is issued (apply is true) but reported failed.
func (c *CrashFS) op() (apply bool, err error) {
	if c.cut {
		return false, ErrPowerCut
	}
	c.ops++
	if c.ops == c.FailAt {
		return false, ErrIO
	}
	if c.ops == c.CutAt {
		c.cut = true
		return true, ErrPowerCut
	}
	return true, nil
}

func (c *CrashFS) dirChange(fn func(map[string]*mfile)) {
	fn(c.names)
	c.dirOp = append(c.dirOp, fn)
}

func (c *CrashFS) OpenFile(name string, flag int, perm os.FileMode) (seglog.File, error) {
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

func (c *CrashFS) Rename(oldpath, newpath string) error {
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

func (c *CrashFS) Remove(name string) error {
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

func (c *CrashFS) ReadDir(dir string) ([]string, error) {
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

func (c *CrashFS) SyncDir(string) error {
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

// Crash returns what a restart finds after the cut.
func (c *CrashFS) Crash(rng *rand.Rand) *CrashFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := maps(c.dirOK)
	for _, fn := range c.dirOp {
		if rng.IntN(2) == 0 { // each on its own: POSIX orders none of them
			fn(names)
		}
	}
	after := NewCrashFS()
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
	fs     *CrashFS
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
