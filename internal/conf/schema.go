package conf

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"
)

// fieldKind is how a field is decoded.
type fieldKind uint8

const (
	fString   fieldKind = iota + 1 // string kinds
	fBool                          // bool kinds
	fInt                           // int, int8 ... int64
	fUint                          // uint, uint8 ... uint64
	fDuration                      // time.Duration
	fText                          // encoding.TextUnmarshaler
	fStrings                       // slices of a string kind
	fInts                          // slices of an int kind
	fUints                         // slices of a uint kind
	fSection                       // struct or pointer to struct
)

// field is one tagged field of a struct.
type field struct {
	name  string // the tag
	index int
	kind  fieldKind
	typ   reflect.Type
	ptr   bool         // fSection, fText: the field is a pointer, allocated on use
	sub   reflect.Type // fSection: the struct type
	elemT reflect.Type // fText: the type to allocate (typ, or typ.Elem() if ptr)
}

// structInfo is what Decode knows about a struct type.
type structInfo struct {
	fields   []*field // in declaration order
	byName   map[string]*field
	keys     []string // sorted names of the non-section fields
	sections []string // sorted names of the section fields
}

type infoResult struct {
	info *structInfo
	err  error
}

var infoCache sync.Map // reflect.Type -> infoResult

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// infoOf returns the info of struct type t.
func infoOf(t reflect.Type) (*structInfo, error) {
	if r, ok := infoCache.Load(t); ok {
		r := r.(infoResult)
		return r.info, r.err
	}
	info, err := build(t)
	infoCache.Store(t, infoResult{info, err})
	return info, err
}

// validate checks struct type t and every section type reachable from it.
func validate(t reflect.Type) error {
	seen := map[reflect.Type]bool{t: true}
	stack := []reflect.Type{t}
	for len(stack) > 0 {
		t := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		info, err := infoOf(t)
		if err != nil {
			return err
		}
		for _, f := range info.fields {
			if f.kind == fSection && !seen[f.sub] {
				seen[f.sub] = true
				stack = append(stack, f.sub)
			}
		}
	}
	return nil
}

func build(t reflect.Type) (*structInfo, error) {
	info := &structInfo{byName: map[string]*field{}}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, ok := sf.Tag.Lookup("conf")
		if !ok || name == "-" {
			continue
		}
		where := fmt.Sprintf("field %s.%s", t, sf.Name)
		switch {
		case !sf.IsExported():
			return nil, fmt.Errorf("conf: %s has a conf tag but is not exported", where)
		case !validName(name):
			return nil, fmt.Errorf("conf: %s: invalid tag conf:%q (use letters, digits, _ and -)", where, name)
		case info.byName[name] != nil:
			return nil, fmt.Errorf("conf: %s: tag conf:%q is already used by field %s", where, name, t.Field(info.byName[name].index).Name)
		}
		f := &field{name: name, index: i, typ: sf.Type}
		classify(f)
		if f.kind == 0 {
			return nil, fmt.Errorf("conf: %s (conf:%q) has unsupported type %s", where, name, sf.Type)
		}
		info.fields = append(info.fields, f)
		info.byName[name] = f
	}
	for name, f := range info.byName {
		if f.kind == fSection {
			info.sections = append(info.sections, name)
		} else {
			info.keys = append(info.keys, name)
		}
	}
	slices.Sort(info.keys)
	slices.Sort(info.sections)
	return info, nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBare(s[i]) {
			return false
		}
	}
	return true
}

func isText(t reflect.Type) bool {
	return t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(textUnmarshalerType)
}

func isIntKind(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return true
	}
	return false
}

func isUintKind(k reflect.Kind) bool {
	switch k {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// classify sets f.kind (0 if f.typ is not supported), f.ptr, f.sub, f.elemT.
func classify(f *field) {
	t := f.typ
	switch {
	case t == durationType:
		f.kind = fDuration
		return
	case t.Kind() == reflect.Interface:
		return
	case t.Kind() == reflect.Pointer && t.Elem().Kind() != reflect.Pointer && isText(t.Elem()):
		f.kind, f.ptr, f.elemT = fText, true, t.Elem()
		return
	case isText(t):
		f.kind, f.elemT = fText, t
		return
	}
	k := t.Kind()
	switch {
	case k == reflect.String:
		f.kind = fString
	case k == reflect.Bool:
		f.kind = fBool
	case isIntKind(k):
		f.kind = fInt
	case isUintKind(k):
		f.kind = fUint
	case k == reflect.Struct:
		f.kind, f.sub = fSection, t
	case k == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		f.kind, f.ptr, f.sub = fSection, true, t.Elem()
	case k == reflect.Slice:
		e := t.Elem()
		if e == durationType || e.Kind() == reflect.Interface || isText(e) {
			return
		}
		switch ek := e.Kind(); {
		case ek == reflect.String:
			f.kind = fStrings
		case isIntKind(ek):
			f.kind = fInts
		case isUintKind(ek):
			f.kind = fUints
		}
	}
}

// set stores v into fv, the field f.
func set(fv reflect.Value, f *field, v value) error {
	switch f.kind {
	case fString:
		if v.kind != vString {
			return mismatch("a string", v)
		}
		fv.SetString(v.str)
	case fBool:
		if v.kind != vBool {
			return mismatch("true or false", v)
		}
		fv.SetBool(v.b)
	case fInt:
		if v.kind != vInt {
			return mismatch("an integer", v)
		}
		x, err := toInt(v.n, f.typ.Bits())
		if err != nil {
			return err
		}
		fv.SetInt(x)
	case fUint:
		if v.kind != vInt {
			return mismatch("an integer", v)
		}
		x, err := toUint(v.n, f.typ.Bits())
		if err != nil {
			return err
		}
		fv.SetUint(x)
	case fDuration:
		if v.kind != vString {
			return mismatch(`a string such as "250ms"`, v)
		}
		d, err := time.ParseDuration(v.str)
		if err != nil {
			return fmt.Errorf(`invalid duration %s: expected a string such as "250ms", "10s" or "1h30m"`, snippet(v.str))
		}
		if d < 0 {
			return fmt.Errorf("duration %s must not be negative", snippet(v.str))
		}
		fv.SetInt(int64(d))
	case fText:
		if v.kind != vString {
			return mismatch("a string", v)
		}
		p := reflect.New(f.elemT)
		if err := p.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(v.str)); err != nil {
			return &wrapped{fmt.Sprintf("invalid value %s: %v", snippet(v.str), err), err}
		}
		if f.ptr {
			fv.Set(p)
		} else {
			fv.Set(p.Elem())
		}
	case fStrings:
		if v.kind != vArray || v.elem == vInt {
			return mismatch(`an array of strings such as ["a", "b"]`, v)
		}
		s := reflect.MakeSlice(f.typ, len(v.strs), len(v.strs))
		for i, e := range v.strs {
			s.Index(i).SetString(e)
		}
		fv.Set(s)
	case fInts, fUints:
		if v.kind != vArray || v.elem == vString {
			return mismatch("an array of integers such as [1, 2]", v)
		}
		bits := f.typ.Elem().Bits()
		s := reflect.MakeSlice(f.typ, len(v.ints), len(v.ints))
		for i, e := range v.ints {
			if f.kind == fInts {
				x, err := toInt(e, bits)
				if err != nil {
					return fmt.Errorf("element %d: %v", i+1, err)
				}
				s.Index(i).SetInt(x)
			} else {
				x, err := toUint(e, bits)
				if err != nil {
					return fmt.Errorf("element %d: %v", i+1, err)
				}
				s.Index(i).SetUint(x)
			}
		}
		fv.Set(s)
	default:
		return errors.New("conf: internal error: unknown field kind")
	}
	return nil
}

// wrapped is a message that wraps an error it does not simply append.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

func mismatch(want string, v value) error {
	var got string
	switch v.kind {
	case vString:
		got = "the string " + snippet(v.str)
	case vInt:
		got = "the integer " + literal(v.n)
	case vBool:
		got = fmt.Sprint(v.b)
	case vArray:
		switch v.elem {
		case vString:
			got = "an array of strings"
		case vInt:
			got = "an array of integers"
		default:
			got = "an empty array"
		}
	}
	return fmt.Errorf("expected %s, got %s", want, got)
}

// literal returns an integer as written, cut to a readable length.
func literal(n integer) string {
	if len(n.lit) > 40 {
		return n.lit[:40] + "..."
	}
	return n.lit
}

func toInt(v integer, bits int) (int64, error) {
	limit := uint64(1) << (bits - 1) // magnitude of the minimum
	switch {
	case v.big:
	case v.neg && v.mag <= limit:
		return -int64(v.mag), nil // wraps correctly for the minimum
	case !v.neg && v.mag < limit:
		return int64(v.mag), nil
	}
	return 0, fmt.Errorf("%s is out of range (must be between %d and %d)", literal(v), -int64(limit-1)-1, int64(limit-1))
}

func toUint(v integer, bits int) (uint64, error) {
	max := ^uint64(0) >> (64 - bits)
	if !v.big && (!v.neg || v.mag == 0) && v.mag <= max {
		return v.mag, nil
	}
	return 0, fmt.Errorf("%s is out of range (must be between 0 and %d)", literal(v), max)
}
