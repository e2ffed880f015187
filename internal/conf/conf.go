package conf

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on the input; see the package documentation.
const (
	maxFileSize = 1 << 20  // bytes in a file
	maxLineLen  = 64 << 10 // bytes in a line, without its line end
	maxDepth    = 8        // names in a section header
	maxErrors   = 20       // problems reported before giving up
)

// Error is one problem at one line of a file.
type Error struct {
	File string // the name given to Decode
	Line int    // 1-based; 0 for a problem with the whole file
	Key  string // the dotted key or section, e.g. "hw.relay.pin"; empty for syntax errors outside an assignment
	Msg  string // what is wrong, and what was expected

	err error // the TextUnmarshaler error, if any
}

// Error formats e as "file:line: key: message", leaving out the parts that
// are empty (or zero).
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the error of the TextUnmarshaler that refused the value,
// or nil.
func (e *Error) Unwrap() error { return e.err }

// Decode parses src, the contents of the file called name (the name is only
// used in messages, e.g. "/etc/gateagent/gateagent.toml"), into v, a non-nil
// pointer to a struct. Keys the file leaves out keep their values. On error
// *v is left unchanged and the error is an *Error, or errors.Join of up to
// 20 (and a last "too many errors") *Error values, in line order.
func Decode(name string, src []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("conf: Decode needs a non-nil pointer to a struct, got %T", v)
	}
	t := rv.Elem().Type()
	if err := validate(t); err != nil {
		return err
	}
	if len(src) > maxFileSize {
		return &Error{File: name, Msg: fmt.Sprintf("the file is too large (%d bytes; the limit is 1 MiB)", len(src))}
	}
	work := reflect.New(t).Elem()
	work.Set(rv.Elem())
	info, _ := infoOf(t)
	d := &decoder{
		file:   name,
		root:   work,
		info:   info,
		tables: map[string]*table{},
		owned:  map[string]bool{},
	}
	d.cur = &section{val: work, info: info, tab: d.table("")}
	d.run(src)
	switch len(d.errs) {
	case 0:
		rv.Elem().Set(work)
		return nil
	case 1:
		return d.errs[0]
	default:
		return errors.Join(d.errs...)
	}
}

// Keys returns every key that a file can set in v, a struct or a pointer to
// one (which may be nil), dotted and in declaration order, e.g.
// ["version", "gate.id", "hw.relay.pin", ...]. Sections are descended into
// but not listed themselves; sections of recursive types are followed down
// to the nesting limit of 8. Keys panics if v's type cannot be decoded.
func Keys(v any) []string {
	t := reflect.TypeOf(v)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("conf: Keys needs a struct or a pointer to a struct, got %T", v))
	}
	if err := validate(t); err != nil {
		panic(err)
	}
	var keys []string
	var walk func(t reflect.Type, prefix string, depth int)
	walk = func(t reflect.Type, prefix string, depth int) {
		info, _ := infoOf(t)
		for _, f := range info.fields {
			full := join(prefix, f.name)
			if f.kind != fSection {
				keys = append(keys, full)
			} else if depth < maxDepth {
				walk(f.sub, full, depth+1)
			}
		}
	}
	walk(t, "", 0)
	return keys
}

// table is what a file has said about one section.
type table struct {
	declared int            // line of its header, 0 if none yet
	keys     map[string]int // key -> line that set it
}

// section is where assignments currently go.
type section struct {
	path string        // dotted, "" for the top level
	val  reflect.Value // the addressable struct
	info *structInfo
	tab  *table
}

type decoder struct {
	file   string
	errs   []error
	full   bool          // too many errors: stop
	root   reflect.Value // the working copy, addressable
	info   *structInfo   // root's
	tables map[string]*table
	owned  map[string]bool // pointer sections already copied into the working copy
	path   string          // dotted name of the last header, "" if none or unreadable
	cur    *section        // nil: skip assignments (after a bad header)
}

var bom = []byte("\xef\xbb\xbf")

func (d *decoder) run(src []byte) {
	src = bytes.TrimPrefix(src, bom)
	for n := 1; len(src) > 0 && !d.full; n++ {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
		} else {
			src = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > maxLineLen || !utf8.Valid(line) {
			if t := bytes.TrimLeft(line, " \t"); len(t) > 0 && t[0] == '[' {
				// Probably a header: do not file the next keys under the
				// previous section.
				d.cur, d.path = nil, ""
			}
			if len(line) > maxLineLen {
				d.errorf(n, "", "the line is too long (%d bytes; the limit is 64 KiB)", len(line))
			} else {
				i := 0
				for i < len(line) {
					r, size := utf8.DecodeRune(line[i:])
					if r == utf8.RuneError && size == 1 {
						break
					}
					i += size
				}
				d.errorf(n, "", "invalid UTF-8 (byte 0x%02x at column %d): save the file as UTF-8", line[i], i+1)
			}
			continue
		}
		d.line(n, string(line))
	}
}

func (d *decoder) add(e *Error) {
	if d.full {
		return
	}
	if len(d.errs) == maxErrors {
		d.full = true
		e = &Error{File: d.file, Line: e.Line, Msg: fmt.Sprintf("too many errors (more than %d); the rest of the file was not checked", maxErrors)}
	}
	d.errs = append(d.errs, e)
}

func (d *decoder) errorf(line int, key, format string, args ...any) {
	d.add(&Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) table(path string) *table {
	t := d.tables[path]
	if t == nil {
		t = &table{keys: map[string]int{}}
		d.tables[path] = t
	}
	return t
}

// enter makes the section named by parts current.
func (d *decoder) enter(n int, parts []string) {
	path := strings.Join(parts, ".")
	d.path = path
	v, info, prefix := d.root, d.info, ""
	for _, name := range parts {
		full := join(prefix, name)
		f := info.byName[name]
		if f == nil {
			d.errorf(n, full, "unknown section (%s)", known("sections", info.sections, prefix))
			return
		}
		if f.kind != fSection {
			d.errorf(n, full, "%s is a key, not a section: set it with %s = ... under %s", name, name, where(prefix))
			return
		}
		fv := v.Field(f.index)
		if f.ptr {
			if !d.owned[full] {
				// Copy on write, so that the caller's struct is untouched
				// until the whole file has been read.
				nv := reflect.New(f.sub)
				if !fv.IsNil() {
					nv.Elem().Set(fv.Elem())
				}
				fv.Set(nv)
				d.owned[full] = true
			}
			fv = fv.Elem()
		}
		v, prefix = fv, full
		info, _ = infoOf(f.sub)
	}
	tab := d.table(path)
	if tab.declared != 0 {
		d.errorf(n, path, "section [%s] is declared twice (first on line %d)", path, tab.declared)
		return
	}
	tab.declared = n
	d.cur = &section{path: path, val: v, info: info, tab: tab}
}

// assign sets key (full is its dotted name) in the current section.
func (d *decoder) assign(n int, key, full string, val value) {
	c := d.cur
	if c == nil {
		return // under a header already reported
	}
	f := c.info.byName[key]
	if f == nil {
		d.errorf(n, full, "unknown key (%s)", known("keys", c.info.keys, c.path))
		return
	}
	if f.kind == fSection {
		d.errorf(n, full, "%s is a section, not a key: use a [%s] header", key, full)
		return
	}
	if first, dup := c.tab.keys[key]; dup {
		d.errorf(n, full, "duplicate key (first set on line %d)", first)
		return
	}
	c.tab.keys[key] = n
	if err := set(c.val.Field(f.index), f, val); err != nil {
		d.add(&Error{File: d.file, Line: n, Key: full, Msg: err.Error(), err: errors.Unwrap(err)})
	}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func where(prefix string) string {
	if prefix == "" {
		return "the top level"
	}
	return "[" + prefix + "]"
}

// known lists names (sorted) for a message about section prefix.
func known(what string, names []string, prefix string) string {
	w := "at the top level"
	if prefix != "" {
		w = "in [" + prefix + "]"
	}
	if len(names) == 0 {
		return "there are no " + what + " " + w
	}
	return "known " + what + " " + w + ": " + strings.Join(names, ", ")
}

// snippet quotes s for a message, cut to a readable length.
func snippet(s string) string {
	const max = 32
	n := 0
	for i := range s {
		if n == max {
			return strconv.Quote(s[:i]) + "..."
		}
		n++
	}
	return strconv.Quote(s)
}
