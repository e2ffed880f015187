package idcard

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that Parse never panics, that what it accepts is a
// normalized number with a right check character, and that its errors wrap
// one sentinel and never repeat the number.
func FuzzParse(f *testing.F) {
	for _, s := range examples {
		f.Add(s, int64(0))
	}
	for _, s := range []string{
		"", " ", "x", "X", "11010519491231002x", "  110101199003074477  ",
		"81000019491231002X", "1101051949A231002X", "11010519491231002\xff",
		"110105202302300020", "１１０１０５１９４９１２３１００２Ｘ", "\x00\x00\x00",
		strings.Repeat("9", 18), strings.Repeat("0", 17) + "x",
	} {
		f.Add(s, int64(-1e18))
	}
	f.Fuzz(func(t *testing.T, s string, offset int64) {
		at := now.Add(time.Duration(offset))
		n, info, err := Parse(s, at)
		_ = n.Redacted()
		if err != nil {
			count := 0
			for _, e := range []error{ErrLength, ErrCharacters, ErrCheck, ErrArea, ErrBirthDate} {
				if errors.Is(err, e) {
					count++
				}
			}
			if count != 1 {
				t.Fatalf("Parse(%q) = %v wraps %d sentinels, want 1", s, err, count)
			}
			if trimmed := strings.Trim(s, " "); len(trimmed) == 18 && CheckChar(trimmed[:17]) != 0 && strings.Contains(err.Error(), trimmed[:17]) {
				t.Fatalf("Parse(%q) = %q repeats the number", s, err)
			}
			return
		}
		if len(n) != 18 || CheckChar(string(n[:17])) != n[17] {
			t.Fatalf("Parse(%q) accepted %q", s, n)
		}
		if want := strings.ToUpper(strings.Trim(s, " ")); string(n) != want {
			t.Fatalf("Parse(%q) = %q, want %q", s, n, want)
		}
		if info.Area != string(n[:6]) || info.Sequence != string(n[14:17]) || info.BirthDate.After(at) {
			t.Fatalf("Parse(%q): info %+v", s, info)
		}
		if again, _, err := Parse(string(n), at); err != nil || again != n {
			t.Fatalf("Parse(%q) again = %q, %v", n, again, err)
		}
	})
}
