package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"gateagent/internal/plural"
)

// FileError is one problem at one place of a config file.
type FileError struct {
	File string // the name given to Parse, e.g. "/etc/gateagent/gateagent.toml"
	Line int    // 1-based; 0 when go-toml gives no line for it
	Key  string // dotted, e.g. "hw.relay.pin"; empty for a TOML syntax error
	Msg  string // what is wrong, and what the key takes
}

// Error formats e as "file:line: key: message", leaving out the line and
// the key when they are unknown, and cutting a key of junk short.
func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(clip(e.Key) + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxErrors bounds the problems one Parse lists.
const maxErrors = 20

var (
	configType   = reflect.TypeFor[Config]()
	durationType = reflect.TypeFor[time.Duration]()
	// keysType is Config with every key an interface: go-toml's strict mode
	// then lists every unknown key, with no value of the wrong type to stop
	// it first.
	keysType = mirror(configType, func(reflect.Type) reflect.Type { return reflect.TypeFor[any]() })
	// typesType is Config with each time.Duration a string, so that go-toml
	// itself refuses a bare number for a duration, with its line. (Read into
	// time.Duration, interval = 10 would be 10 ns.)
	typesType = mirror(configType, durationsAs(reflect.TypeFor[string]()))
	// valuesType is Config with each time.Duration a durationText, which
	// parses the string.
	valuesType = mirror(configType, durationsAs(reflect.TypeFor[durationText]()))
)

func durationsAs(leaf reflect.Type) func(reflect.Type) reflect.Type {
	return func(t reflect.Type) reflect.Type {
		if t == durationType {
			return leaf
		}
		return t
	}
}

var bom = []byte("\ufeff")

// decode reads src, the file called name, onto c, which holds the
// defaults: keys the file leaves out keep them. On error c is unchanged.
//
// go-toml reads the file four times, each time into a stricter target, so
// that each problem comes with the line go-toml found it on:
//  1. a map: the TOML syntax;
//  2. the config's sections with any value for a key: every unknown key;
//  3. the config with durations as strings: the first value of the wrong
//     type (reported with the unknown keys);
//  4. the config with its durations parsed: the first that is not one.
//
// The messages are written here from the key's Go type and the value the
// map holds, not taken from go-toml's text, which names Go types.
func decode(name string, src []byte, c *Config) error {
	src = bytes.TrimPrefix(src, bom) // editors on Windows write one
	var doc map[string]any
	if err := toml.Unmarshal(src, &doc); err != nil {
		return syntaxError(name, err)
	}
	f := &file{name: name, doc: doc}
	caseErrs, unknown, places := f.scan()
	if places > maxErrors {
		// go-toml's strict mode would find each of these places' line by
		// scanning the file from its start: too long for a large file.
		slices.Sort(unknown)
		some := unknown[:min(len(unknown), 5)]
		for i := range some {
			some[i] = clip(some[i])
		}
		return &FileError{File: name, Msg: fmt.Sprintf("%d unknown keys or sections, such as %s: is it the right file?",
			len(unknown), strings.Join(some, ", "))}
	}
	err := toml.NewDecoder(bytes.NewReader(src)).DisallowUnknownFields().Decode(reflect.New(keysType).Interface())
	errs := f.explain(err)
	var missing *toml.StrictMissingError
	if err == nil || errors.As(err, &missing) {
		// Else a section was given a value: that is the error of step 3 too.
		errs = append(errs, f.explain(toml.NewDecoder(bytes.NewReader(src)).Decode(reflect.New(typesType).Interface()))...)
	}
	slices.SortStableFunc(errs, func(a, b error) int { return a.(*FileError).Line - b.(*FileError).Line })
	if errs = append(errs, caseErrs...); len(errs) > 0 {
		return joinErrors(name, errs)
	}
	v := reflect.New(valuesType)
	convert(v.Elem(), reflect.ValueOf(c).Elem())
	if err := toml.NewDecoder(bytes.NewReader(src)).Decode(v.Interface()); err != nil {
		return joinErrors(name, f.explain(err))
	}
	convert(reflect.ValueOf(c).Elem(), v.Elem())
	return nil
}

// durationText is a duration as the file writes it: a string for
// time.ParseDuration, such as "250ms" or "10s", not negative.
type durationText time.Duration

var errDuration = errors.New(`not a duration of 0s or more such as "10s"`)

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *durationText) UnmarshalText(b []byte) error {
	v, ok := parseDuration(string(b))
	if !ok {
		return errDuration
	}
	*d = durationText(v)
	return nil
}

func parseDuration(s string) (time.Duration, bool) {
	d, err := time.ParseDuration(s)
	return d, err == nil && d >= 0
}

// mirror returns section t with the type of each key in it, at any depth
// of sections, replaced by leaf's; field names and tags stay.
func mirror(t reflect.Type, leaf func(reflect.Type) reflect.Type) reflect.Type {
	if t.Kind() != reflect.Struct {
		return leaf(t)
	}
	fields := make([]reflect.StructField, t.NumField())
	changed := false
	for i := range fields {
		f := t.Field(i)
		m := mirror(f.Type, leaf)
		changed = changed || m != f.Type
		fields[i] = reflect.StructField{Name: f.Name, Type: m, Tag: f.Tag}
	}
	if !changed {
		return t
	}
	return reflect.StructOf(fields)
}

// convert copies src onto dst, one of them a section of Config and the
// other its mirror.
func convert(dst, src reflect.Value) {
	if dst.Kind() == reflect.Struct && dst.Type() != src.Type() {
		for i := range dst.NumField() {
			convert(dst.Field(i), src.Field(i))
		}
		return
	}
	dst.Set(src.Convert(dst.Type()))
}

// tomlName is the key a field is read from.
func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

// sections maps each section type of Config to its keys' and subsections'
// types by name.
var sections = func() map[reflect.Type]map[string]reflect.Type {
	m := map[reflect.Type]map[string]reflect.Type{}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		if m[t] != nil {
			return
		}
		m[t] = map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			m[t][tomlName(f)] = f.Type
			if f.Type.Kind() == reflect.Struct {
				add(f.Type)
			}
		}
	}
	add(configType)
	return m
}()

// fieldType returns the type of the key or section called name in section
// t (none if t is not a section).
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	ft, ok := sections[t][name]
	return ft, ok
}

// typeAt returns the type of the key or section at path (Config for none).
func typeAt(path []string) (reflect.Type, bool) {
	t := configType
	for _, name := range path {
		var ok bool
		if t, ok = fieldType(t, name); !ok {
			return nil, false
		}
	}
	return t, true
}

// names lists the keys and sections of section t, in declaration order.
func names(t reflect.Type) []string {
	var n []string
	for i := range t.NumField() {
		if name := tomlName(t.Field(i)); name != "" && name != "-" {
			n = append(n, name)
		}
	}
	return n
}

// Keys lists every key the file may set, dotted and in declaration order
// (e.g. "version", "gate.id", "hw.relay.pin"), for documentation checks.
func Keys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			switch name := tomlName(f); {
			case name == "" || name == "-":
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, prefix+name+".")
			default:
				keys = append(keys, prefix+name)
			}
		}
	}
	walk(configType, "")
	return keys
}

// file is a config file being read: its name and its contents as a map.
type file struct {
	name string
	doc  map[string]any
}

// at returns the value the file gives the key or section at path.
func (f *file) at(path []string) (any, bool) {
	var v any = f.doc
	for _, name := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[name]; !ok {
			return nil, false
		}
	}
	return v, true
}

// explain turns go-toml's error into ours, each a *FileError.
func (f *file) explain(err error) []error {
	var missing *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &missing):
		errs := make([]error, 0, len(missing.Errors))
		for i := range missing.Errors {
			errs = append(errs, f.unknown(&missing.Errors[i]))
		}
		return errs
	case errors.As(err, &de):
		return []error{f.badValue(de)}
	default:
		return []error{&FileError{File: f.name, Msg: err.Error()}}
	}
}

// unknown is a key or section that Config does not have.
func (f *file) unknown(e *toml.DecodeError) error {
	line, _ := e.Position()
	key := []string(e.Key())
	if len(key) == 0 {
		return &FileError{File: f.name, Line: line, Msg: "unknown key"}
	}
	parent := key[:len(key)-1]
	v, inFile := f.at(key)
	t, ok := typeAt(parent)
	if !inFile || !ok || t.Kind() != reflect.Struct {
		// Inside an inline table go-toml gives only part of the path.
		return &FileError{File: f.name, Line: line, Key: key[len(key)-1], Msg: "unknown key"}
	}
	what := "key"
	if isTable(v) {
		what = "section"
	}
	where := "the top level"
	if len(parent) > 0 {
		where = "[" + strings.Join(parent, ".") + "]"
	}
	return &FileError{File: f.name, Line: line, Key: strings.Join(key, "."),
		Msg: fmt.Sprintf("unknown %s; %s knows: %s", what, where, strings.Join(names(t), ", "))}
}

// badValue is a value of the wrong type, or a duration that is not one.
func (f *file) badValue(e *toml.DecodeError) error {
	line, _ := e.Position()
	key := []string(e.Key())
	t, ok := typeAt(key)
	v, inFile := f.at(key)
	if ok && inFile && t.Kind() == reflect.Struct && isTable(v) {
		// A value inside an inline table: go-toml names the table.
		key, v, t, ok = mismatch(key, v, t)
	}
	if !ok || !inFile || len(key) == 0 {
		return &FileError{File: f.name, Line: line, Key: strings.Join(key, "."), Msg: "not a valid value here"}
	}
	return &FileError{File: f.name, Line: line, Key: strings.Join(key, "."),
		Msg: fmt.Sprintf("got %s, want %s", describe(v), want(key, t, v))}
}

// mismatch finds, in declaration order, the first value under section t
// (at path, given as v) that t's field would not take.
func mismatch(path []string, v any, t reflect.Type) ([]string, any, reflect.Type, bool) {
	m := v.(map[string]any)
	for i := range t.NumField() {
		f := t.Field(i)
		name := tomlName(f)
		fv, ok := m[name]
		if !ok {
			continue
		}
		p := append(slices.Clip(path), name)
		if f.Type.Kind() == reflect.Struct && isTable(fv) {
			if k, kv, kt, found := mismatch(p, fv, f.Type); found {
				return k, kv, kt, true
			}
		} else if !fits(fv, f.Type) {
			return p, fv, f.Type, true
		}
	}
	return path, v, t, false
}

// fits reports whether a field of type t takes the value v.
func fits(v any, t reflect.Type) bool {
	switch {
	case t == durationType:
		s, ok := v.(string)
		if ok {
			_, ok = parseDuration(s)
		}
		return ok
	case t.Kind() == reflect.String:
		_, ok := v.(string)
		return ok
	case t.Kind() == reflect.Bool:
		_, ok := v.(bool)
		return ok
	case t.Kind() == reflect.Int:
		n, ok := v.(int64)
		return ok && n >= math.MinInt && n <= math.MaxInt
	case t.Kind() == reflect.Int64:
		_, ok := v.(int64)
		return ok
	case t.Kind() == reflect.Float64:
		switch f := v.(type) {
		case int64:
			return true
		case float64:
			return !math.IsNaN(f) && !math.IsInf(f, 0)
		}
		return false
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		a, ok := v.([]any)
		for _, e := range a {
			if _, isString := e.(string); !isString {
				return false
			}
		}
		return ok
	case t.Kind() == reflect.Struct:
		return isTable(v)
	}
	return false
}

func isTable(v any) bool {
	_, ok := v.(map[string]any)
	return ok
}

// describe says what the file holds, for a message.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return "the string " + quote(v)
	case int64:
		return "the integer " + strconv.FormatInt(v, 10)
	case float64:
		return "the number " + strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case map[string]any:
		return "a table"
	case []any:
		if len(v) > 0 && isTable(v[0]) {
			return "an array of tables"
		}
		for _, e := range v {
			if _, ok := e.(string); !ok {
				return "an array holding " + describe(e)
			}
		}
		return "an array of strings"
	}
	return "a date or time"
}

// want says what the key at path, of type t, takes, given that it got v.
func want(path []string, t reflect.Type, v any) string {
	switch {
	case t == durationType:
		if s, ok := v.(string); ok {
			if d, err := time.ParseDuration(s); err == nil && d < 0 {
				return `a duration of 0s or more, such as "10s" or "250ms"`
			}
		}
		return `a duration as a string with its unit, such as "10s" or "250ms"`
	case t.Kind() == reflect.String:
		return "a string in quotes"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		if _, ok := v.(int64); ok {
			return fmt.Sprintf("a whole number from %d to %d", math.MinInt, math.MaxInt)
		}
		return "a whole number, without quotes"
	case t.Kind() == reflect.Int64:
		if _, ok := v.(int64); ok {
			return fmt.Sprintf("a whole number from %d to %d", int64(math.MinInt64), int64(math.MaxInt64))
		}
		return "a whole number, without quotes"
	case t.Kind() == reflect.Float64:
		return "a number, without quotes, such as 4 or 2.5"
	case t.Kind() == reflect.Slice:
		return `an array of strings such as ["a", "b"]`
	case t.Kind() == reflect.Struct:
		return "a [" + strings.Join(path, ".") + "] section"
	}
	return "another value"
}

// quote quotes s for a message, cut to a readable length.
func quote(s string) string {
	if c := clip(s); c != s {
		return strconv.Quote(strings.TrimSuffix(c, "...")) + "..."
	}
	return strconv.Quote(s)
}

// clip cuts s to a readable length for a message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !isRuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

func isRuneStart(b byte) bool { return b&0xc0 != 0x80 }

// scan walks the file's map against Config. It returns the names the file
// spells in another letter case than Config (go-toml reads Pin as pin, and
// of a file that holds both, one would be lost without a word), the names
// Config does not have, and how many places of the file hold them: at least
// as many as go-toml's strict mode reports.
func (f *file) scan() (caseErrs []error, unknown []string, places int) {
	var walk func(m map[string]any, t reflect.Type, path []string)
	walk = func(m map[string]any, t reflect.Type, path []string) {
		for name, v := range m {
			p := append(slices.Clip(path), name)
			if ft, ok := fieldType(t, name); ok {
				if sub, isMap := v.(map[string]any); isMap && ft.Kind() == reflect.Struct {
					walk(sub, ft, p)
				}
				continue
			}
			known := names(t)
			if i := slices.IndexFunc(known, func(k string) bool { return strings.EqualFold(k, name) }); i >= 0 {
				caseErrs = append(caseErrs, &FileError{File: f.name, Key: strings.Join(p, "."),
					Msg: "unknown name: names are case-sensitive, write " + known[i]})
				continue
			}
			unknown = append(unknown, strings.Join(p, "."))
			places += nodes(v)
		}
	}
	walk(f.doc, configType, nil)
	slices.SortFunc(caseErrs, func(a, b error) int { return strings.Compare(a.(*FileError).Key, b.(*FileError).Key) })
	return caseErrs, unknown, places
}

// nodes counts v and the tables and values in it (an array of values is
// one), at least the expressions of the file that set them.
func nodes(v any) int {
	n := 1
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			n += nodes(e)
		}
	case []any:
		for _, e := range v {
			if isTable(e) { // [[array.of.tables]]
				n += nodes(e)
			}
		}
	}
	return n
}

// marks counts the '=' and '[' of src on the lines that are not comments:
// at least one for each key and each section header.
func marks(src []byte) int {
	n := 0
	for line := range bytes.Lines(src) {
		if t := bytes.TrimLeft(line, " \t"); len(t) > 0 && t[0] == '#' {
			continue
		}
		n += bytes.Count(line, []byte("=")) + bytes.Count(line, []byte("["))
	}
	return n
}

// syntaxError is go-toml's error for a file that is not TOML.
func syntaxError(name string, err error) error {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return &FileError{File: name, Msg: err.Error()}
	}
	line, _ := de.Position()
	return &FileError{File: name, Line: line, Msg: strings.TrimPrefix(de.Error(), "toml: ")}
}

// joinErrors returns one error for errs, listing at most maxErrors.
func joinErrors(name string, errs []error) error {
	if len(errs) > maxErrors {
		n := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], &FileError{File: name, Msg: "and " + plural.N(n, "more problem", "more problems")})
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}
