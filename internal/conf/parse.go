package conf

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// valueKind is the type of a parsed value.
type valueKind uint8

const (
	vString valueKind = iota + 1
	vInt
	vBool
	vArray
)

// value is a parsed value, before it meets its field.
type value struct {
	kind valueKind
	str  string    // vString
	n    integer   // vInt
	b    bool      // vBool
	elem valueKind // vArray: vString or vInt; 0 if empty
	strs []string  // vArray of vString
	ints []integer // vArray of vInt
}

// integer is a parsed integer.
type integer struct {
	lit string // as written
	neg bool   // has a minus sign
	big bool   // the magnitude does not fit in 64 bits
	mag uint64 // the magnitude
}

func isBare(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

func isControl(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f }

func skipWS(s string, p int) int {
	for p < len(s) && (s[p] == ' ' || s[p] == '\t') {
		p++
	}
	return p
}

func bareKey(s string, p int) (string, int) {
	q := p
	for q < len(s) && isBare(s[q]) {
		q++
	}
	return s[p:q], q
}

// line parses line n, s (valid UTF-8, at most maxLineLen bytes, without its
// line end).
func (d *decoder) line(n int, s string) {
	p := skipWS(s, 0)
	switch {
	case p == len(s):
	case s[p] == '#':
		if err := checkComment(s[p:]); err != nil {
			d.errorf(n, "", "%v", err)
		}
	case s[p] == '[':
		d.cur, d.path = nil, ""
		d.header(n, s, p)
	default:
		d.keyval(n, s, p)
	}
}

func checkComment(s string) error {
	for i := 0; i < len(s); i++ {
		if isControl(s[i]) {
			return fmt.Errorf("control character U+%04X in a comment", s[i])
		}
	}
	return nil
}

// end checks that only spaces and a comment follow position p.
func end(s string, p int, after string) error {
	p = skipWS(s, p)
	switch {
	case p == len(s):
		return nil
	case s[p] == '#':
		return checkComment(s[p:])
	default:
		return fmt.Errorf("unexpected text after the %s: %s", after, snippet(s[p:]))
	}
}

// header parses a section header; s[p] is '['.
func (d *decoder) header(n int, s string, p int) {
	p++
	if p < len(s) && s[p] == '[' {
		d.errorf(n, "", "arrays of tables ([[...]]) are not supported")
		return
	}
	var parts []string
	for {
		p = skipWS(s, p)
		name, q := bareKey(s, p)
		if name == "" {
			switch {
			case q == len(s):
				d.errorf(n, "", "unterminated section header: missing ]")
			case s[q] == '"' || s[q] == '\'':
				d.errorf(n, "", "quoted section names are not supported")
			case s[q] == ']' && len(parts) == 0:
				d.errorf(n, "", "empty section name")
			default:
				d.errorf(n, "", "invalid section name: expected letters, digits, _ or -, found %s", snippet(s[q:]))
			}
			return
		}
		if len(parts) == maxDepth {
			d.errorf(n, "", "sections are nested deeper than %d levels", maxDepth)
			return
		}
		parts = append(parts, name)
		p = skipWS(s, q)
		if p == len(s) {
			d.errorf(n, "", "unterminated section header: missing ]")
			return
		}
		if s[p] == '.' {
			p++
			continue
		}
		if s[p] == ']' {
			p++
			break
		}
		d.errorf(n, "", "invalid section name: expected letters, digits, _ or -, found %s", snippet(s[p:]))
		return
	}
	if err := end(s, p, "section header"); err != nil {
		d.errorf(n, "", "%v", err)
		return
	}
	d.enter(n, parts)
}

// keyval parses key = value; s[p] is neither a space, '#' nor '['.
func (d *decoder) keyval(n int, s string, p int) {
	start := p
	key, q := bareKey(s, p)
	if key == "" {
		switch s[q] {
		case '"', '\'':
			d.errorf(n, "", "quoted keys are not supported")
		case '=':
			d.errorf(n, "", "missing key before =")
		default:
			d.errorf(n, "", "expected key = value, a [section] header or a # comment, found %s", snippet(s[q:]))
		}
		return
	}
	full := join(d.path, key)
	p = skipWS(s, q)
	switch {
	case p < len(s) && s[p] == '.':
		e := p
		for e < len(s) && (isBare(s[e]) || s[e] == '.' || s[e] == ' ' || s[e] == '\t') {
			e++
		}
		dotted := strings.TrimRight(s[start:e], " \t")
		d.errorf(n, "", "dotted keys such as %s are not supported: put the key under a [section] header", snippet(dotted))
		return
	case p == len(s):
		d.errorf(n, full, "missing = after the key")
		return
	case s[p] != '=':
		d.errorf(n, full, "expected = after the key, found %s", snippet(s[p:]))
		return
	}
	p = skipWS(s, p+1)
	if p == len(s) || s[p] == '#' {
		d.errorf(n, full, "missing value after =")
		return
	}
	val, p, err := parseValue(s, p, false)
	if err == nil {
		err = end(s, p, "value")
	}
	if err != nil {
		d.errorf(n, full, "%v", err)
		return
	}
	d.assign(n, key, full, val)
}

// parseValue parses the value at s[p] (not a space) and returns it and the
// position after it.
func parseValue(s string, p int, inArray bool) (value, int, error) {
	switch s[p] {
	case '"':
		if strings.HasPrefix(s[p:], `"""`) {
			return value{}, p, errors.New(`multi-line strings (""") are not supported`)
		}
		return parseBasic(s, p)
	case '\'':
		if strings.HasPrefix(s[p:], `'''`) {
			return value{}, p, errors.New(`multi-line strings (''') are not supported`)
		}
		return parseLiteral(s, p)
	case '[':
		if inArray {
			return value{}, p, errors.New("nested arrays are not supported")
		}
		return parseArray(s, p)
	case '{':
		return value{}, p, errors.New("inline tables ({...}) are not supported")
	}
	q := p
	for q < len(s) && !strings.ContainsRune(" \t,[]{}#", rune(s[q])) {
		q++
	}
	tok := s[p:q]
	switch tok {
	case "":
		return value{}, p, fmt.Errorf("expected a value, found %s", snippet(s[p:]))
	case "true", "false":
		return value{kind: vBool, b: tok == "true"}, q, nil
	}
	if n, ok := parseInt(tok); ok {
		return value{kind: vInt, n: n}, q, nil
	}
	return value{}, p, diagnose(tok)
}

// parseInt parses a TOML decimal integer.
func parseInt(tok string) (integer, bool) {
	v := integer{lit: tok}
	digits := tok
	if digits != "" && (digits[0] == '+' || digits[0] == '-') {
		v.neg = digits[0] == '-'
		digits = digits[1:]
	}
	if digits == "" || digits[0] == '0' && len(digits) > 1 {
		return integer{}, false
	}
	prevDigit := false
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c == '_' {
			if !prevDigit || i == len(digits)-1 {
				return integer{}, false
			}
			prevDigit = false
			continue
		}
		if c < '0' || c > '9' {
			return integer{}, false
		}
		prevDigit = true
		x := uint64(c - '0')
		if v.big || v.mag > (math.MaxUint64-x)/10 {
			v.big = true
		} else {
			v.mag = v.mag*10 + x
		}
	}
	return v, true
}

// diagnose explains why tok is not a value.
func diagnose(tok string) error {
	t := strings.TrimLeft(tok, "+-")
	lower := strings.ToLower(tok)
	switch {
	case t == "inf" || t == "nan":
		return fmt.Errorf("floats are not supported, found %s", snippet(tok))
	case t != "" && '0' <= t[0] && t[0] <= '9':
		switch {
		case len(t) > 1 && t[0] == '0' && strings.ContainsRune("xob", rune(t[1])):
			return fmt.Errorf("only decimal integers are supported, found %s", snippet(tok))
		case strings.Contains(t, ":") || len(t) > 4 && t[4] == '-':
			return fmt.Errorf("dates and times are not supported (write them as a quoted string), found %s", snippet(tok))
		case strings.ContainsAny(t, ".eE"):
			return fmt.Errorf("floats are not supported, found %s", snippet(tok))
		case strings.Trim(t, "0123456789_") == "" && len(t) > 1 && t[0] == '0':
			return fmt.Errorf("leading zeros are not allowed in integers, found %s", snippet(tok))
		case strings.Trim(t, "0123456789_") == "":
			return fmt.Errorf("misplaced _ in integer %s (put _ only between digits)", snippet(tok))
		}
		return fmt.Errorf("invalid integer %s", snippet(tok))
	case lower == "true" || lower == "false":
		return fmt.Errorf("write booleans as true or false, in lower case, found %s", snippet(tok))
	}
	return fmt.Errorf("invalid value %s: strings must be in quotes", snippet(tok))
}

// parseBasic parses a "basic string"; s[p] is '"'.
func parseBasic(s string, p int) (value, int, error) {
	var b strings.Builder
	for p++; ; {
		if p >= len(s) {
			return value{}, p, errors.New("unterminated string: missing \" (strings must end on their line)")
		}
		c := s[p]
		switch {
		case c == '"':
			return value{kind: vString, str: b.String()}, p + 1, nil
		case c == '\\':
			if p+1 >= len(s) {
				return value{}, p, errors.New("unterminated string: missing \" (strings must end on their line)")
			}
			switch s[p+1] {
			case '"':
				b.WriteByte('"')
			case '\\':
				b.WriteByte('\\')
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'u':
				r, ok := hex4(s[p+2:])
				if !ok {
					return value{}, p, fmt.Errorf(`invalid escape %s: \u needs 4 hexadecimal digits`, snippet(cut(s[p:], 6)))
				}
				if !utf8.ValidRune(r) {
					return value{}, p, fmt.Errorf(`invalid escape %s: not a Unicode scalar value`, snippet(s[p:p+6]))
				}
				b.WriteRune(r)
				p += 4
			default:
				_, size := utf8.DecodeRuneInString(s[p+1:])
				return value{}, p, fmt.Errorf(`invalid escape %s in string (the escapes are \" \\ \n \t \r \uXXXX)`, snippet(s[p:p+1+size]))
			}
			p += 2
		case isControl(c):
			return value{}, p, fmt.Errorf("control character U+%04X in a string (write \\n, \\t, \\r or \\uXXXX)", c)
		default:
			b.WriteByte(c)
			p++
		}
	}
}

// cut returns the first n bytes of s, or s.
func cut(s string, n int) string {
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		return s[:n]
	}
	return s
}

func hex4(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// parseLiteral parses a literal string; s[p] is a single quote.
func parseLiteral(s string, p int) (value, int, error) {
	for q := p + 1; q < len(s); q++ {
		switch c := s[q]; {
		case c == '\'':
			return value{kind: vString, str: s[p+1 : q]}, q + 1, nil
		case isControl(c):
			return value{}, p, fmt.Errorf("control character U+%04X in a string", c)
		}
	}
	return value{}, p, errors.New("unterminated string: missing ' (strings must end on their line)")
}

// parseArray parses a one-line array; s[p] is '['.
func parseArray(s string, p int) (value, int, error) {
	unterminated := errors.New("unterminated array: missing ] (arrays must be on one line)")
	v := value{kind: vArray}
	p = skipWS(s, p+1)
	if p < len(s) && s[p] == ']' {
		return v, p + 1, nil
	}
	for {
		if p == len(s) || s[p] == '#' {
			return value{}, p, unterminated
		}
		e, q, err := parseValue(s, p, true)
		if err != nil {
			return value{}, q, err
		}
		switch {
		case e.kind != vString && e.kind != vInt:
			return value{}, p, errors.New("only arrays of strings and arrays of integers are supported")
		case v.elem != 0 && e.kind != v.elem:
			return value{}, p, errors.New("an array must hold only strings or only integers")
		}
		if v.elem == 0 {
			// Allocate once: there are at most as many elements as commas,
			// plus one.
			n := strings.Count(s[q:], ",") + 1
			if e.kind == vString {
				v.strs = make([]string, 0, n)
			} else {
				v.ints = make([]integer, 0, n)
			}
		}
		v.elem = e.kind
		if e.kind == vString {
			v.strs = append(v.strs, e.str)
		} else {
			v.ints = append(v.ints, e.n)
		}
		p = skipWS(s, q)
		switch {
		case p == len(s) || s[p] == '#':
			return value{}, p, unterminated
		case s[p] == ']':
			return v, p + 1, nil
		case s[p] != ',':
			return value{}, p, fmt.Errorf("expected , or ] in the array, found %s", snippet(s[p:]))
		}
		p = skipWS(s, p+1)
		if p < len(s) && s[p] == ']' {
			return v, p + 1, nil // trailing comma
		}
	}
}
