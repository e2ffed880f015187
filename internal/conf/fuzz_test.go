package conf

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func FuzzDecode(f *testing.F) {
	f.Add([]byte(fullExample))
	f.Add([]byte(strings.ReplaceAll(fullExample, "\n", "\r\n")))
	for _, tc := range errorCases {
		if len(tc.src) < 4096 {
			f.Add([]byte(tc.src))
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		var a config
		err := Decode("f.toml", src, &a)
		if err != nil {
			checkErrors(t, src, err)
		} else {
			var b config
			if err := Decode("f.toml", src, &b); err != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("not deterministic: %+v, then %+v, %v", a, b, err)
			}
		}

		// On error, the defaults are untouched; on success, the file
		// decodes onto them too.
		c := defaults()
		if errC := Decode("f.toml", src, &c); errC != nil {
			if err == nil {
				t.Fatalf("Decode into zero succeeded, into defaults failed: %v", errC)
			}
			if !reflect.DeepEqual(c, defaults()) {
				t.Fatalf("Decode changed the struct on error %v: %+v", errC, c)
			}
		} else if err != nil {
			t.Fatalf("Decode into defaults succeeded, into zero failed: %v", err)
		}
	})
}

// checkErrors checks that err is one *Error or a join of at most 21, in
// line order, each on a line of src and with a message.
func checkErrors(t *testing.T, src []byte, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
		if len(errs) < 2 || len(errs) > maxErrors+1 {
			t.Fatalf("%d errors joined: %v", len(errs), err)
		}
	}
	lines := bytes.Count(src, []byte("\n")) + 1
	prev := 0
	for _, err := range errs {
		var e *Error
		if !errors.As(err, &e) || err != error(e) {
			t.Fatalf("%v (%T) is not an *Error", err, err)
		}
		if e.File != "f.toml" || e.Line < prev || e.Line > lines || e.Msg == "" {
			t.Fatalf("bad error %+v (file has %d lines)", e, lines)
		}
		if e.Line == 0 && len(src) <= maxFileSize {
			t.Fatalf("error without a line: %v", e)
		}
		prev = e.Line
	}
}
