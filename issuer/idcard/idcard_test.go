package idcard

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// examples are valid numbers from the brief (the second is born in 1880,
// so it has a right check character but Parse refuses its birth date).
var examples = []string{"11010519491231002X", "440524188001010014", "110101199003074477"}

// now is a fixed "today" for the tests: 2024-06-01 12:00 in UTC+8.
var now = time.Date(2024, 6, 1, 4, 0, 0, 0, time.UTC)

// refCheck is an independent ISO 7064 MOD 11-2: it tries each of the 11
// check values v and keeps the one for which the whole number, with weights
// 2^(17-i) mod 11 computed by doubling, sums to 1 mod 11.
func refCheck(first17 string) byte {
	for v := range 11 {
		sum, w := 0, 1 // w = 2^(17-i) mod 11, from i = 17 (the check) down
		sum += v * w
		for i := 16; i >= 0; i-- {
			w = w * 2 % 11
			sum += int(first17[i]-'0') * w
		}
		if sum%11 == 1 {
			if v == 10 {
				return 'X'
			}
			return byte('0' + v)
		}
	}
	panic("no check value")
}

// num completes 17 digits with their check character (from refCheck).
func num(first17 string) string { return first17 + string(refCheck(first17)) }

func TestCheckCharExamples(t *testing.T) {
	for _, s := range examples {
		if got := CheckChar(s[:17]); got != s[17] {
			t.Errorf("CheckChar(%s) = %q, want %q", s[:17], got, s[17])
		}
		if got := refCheck(s[:17]); got != s[17] {
			t.Errorf("refCheck(%s) = %q, want %q", s[:17], got, s[17])
		}
	}
}

func TestCheckCharRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[byte]bool{}
	for range 10000 {
		var b [17]byte
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		s := string(b[:])
		got, want := CheckChar(s), refCheck(s)
		if got != want {
			t.Fatalf("CheckChar(%s) = %q, independent implementation says %q", s, got, want)
		}
		seen[got] = true
	}
	if len(seen) != 11 {
		t.Errorf("random numbers gave %d distinct check characters, want all 11", len(seen))
	}
}

func TestCheckCharInvalid(t *testing.T) {
	for _, s := range []string{"", "1101051949123100", "110105194912310021", "1101051949123100a", "11010519491231 02", "１１０１０５１９４９１２３１００２"} {
		if got := CheckChar(s); got != 0 {
			t.Errorf("CheckChar(%q) = %q, want 0", s, got)
		}
	}
}

func TestParseValid(t *testing.T) {
	for _, s := range []string{
		"11010519491231002X",
		"110101199003074477",
		num("11010120000229001"), // leap day
		num("44059020000101001"), // prefecture 90
		num("65701019800101002"), // prefecture 70
		num("11010519000101001"), // 1900, 124 years old
		num("11010520240601001"), // born today
	} {
		n, _, err := Parse(s, now)
		if err != nil {
			t.Errorf("Parse(%s): %v", s, err)
			continue
		}
		if string(n) != s {
			t.Errorf("Parse(%s) = %s", s, n)
		}
	}
}

func TestParseNormalizes(t *testing.T) {
	n, _, err := Parse("  11010519491231002x ", now)
	if err != nil {
		t.Fatal(err)
	}
	if n != "11010519491231002X" {
		t.Errorf("got %q, want 11010519491231002X", n)
	}
	if _, _, err := Parse("\t11010519491231002X", now); !errors.Is(err, ErrLength) {
		t.Errorf("a tab is not trimmed (only ASCII spaces): got %v, want ErrLength", err)
	}
}

func TestParseInfo(t *testing.T) {
	_, info, err := Parse("11010519491231002X", now)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Area: "110105", Province: "11", Sequence: "002", Female: true,
		BirthDate: time.Date(1949, 12, 31, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))}
	if info.Area != want.Area || info.Province != want.Province || info.Sequence != want.Sequence || info.Female != want.Female {
		t.Errorf("got %+v, want %+v", info, want)
	}
	if !info.BirthDate.Equal(want.BirthDate) {
		t.Errorf("BirthDate = %v, want %v", info.BirthDate, want.BirthDate)
	}
	if name, off := info.BirthDate.Zone(); name != "CST" || off != 8*3600 {
		t.Errorf("BirthDate zone = %s %d, want CST 28800", name, off)
	}
	if !info.BirthDate.Equal(time.Date(1949, 12, 30, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("BirthDate = %v, want 1949-12-30 16:00 UTC", info.BirthDate.UTC())
	}

	_, info, err = Parse("110101199003074477", now)
	if err != nil {
		t.Fatal(err)
	}
	if info.Female || info.Sequence != "447" || info.Province != "11" || info.Area != "110101" {
		t.Errorf("got %+v, want a man, sequence 447, area 110101", info)
	}
	if y, m, d := info.BirthDate.Date(); y != 1990 || m != 3 || d != 7 {
		t.Errorf("birth date %d-%d-%d, want 1990-3-7", y, m, d)
	}
}

func TestParseErrors(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	tests := []struct {
		name string
		in   string
		now  time.Time
		want error
		says string // a fragment the message must contain
	}{
		{"empty", "", now, ErrLength, "has 0 characters"},
		{"17 characters", "11010519491231002", now, ErrLength, "has 17 characters"},
		{"19 characters", "11010519491231002X1", now, ErrLength, "has 19 characters"},
		{"inner space", "110105 19491231002X", now, ErrLength, "without spaces"},
		{"non-ASCII counted in bytes", "１１０１０５１９４９１２３１００２Ｘ", now, ErrLength, "has 54 characters"},
		{"letter in the middle", "1101051949A231002X", now, ErrCharacters, "character 11 is not a digit"},
		{"x not last", "x10105194912310021", now, ErrCharacters, "character 1 is not a digit"},
		{"18th a letter", "11010519491231002Y", now, ErrCharacters, "18th character"},
		{"18th non-ASCII", "11010519491231002\xff", now, ErrCharacters, "18th character"},
		{"wrong check", "110101199003074475", now, ErrCheck, "the check character is 7 but the number ends in 5"},
		{"X instead of digit", "11010119900307447X", now, ErrCheck, "the check character is 7 but the number ends in X"},
		{"digit instead of X", "110105194912310020", now, ErrCheck, "the check character is X but the number ends in 0"},
		{"province 99", num("99010519491231002"), now, ErrArea, "99 (the first 2 digits) is not a mainland province"},
		{"province 10", num("10010519491231002"), now, ErrArea, "not a mainland province"},
		{"province 71 Taiwan", num("71000019491231002"), now, ErrArea, "Hong Kong, Macao or Taiwan"},
		{"province 81 Hong Kong", num("81000019491231002"), now, ErrArea, "Hong Kong, Macao or Taiwan residence-permit"},
		{"province 82 Macao", num("82000019491231002"), now, ErrArea, "not a resident identity card"},
		{"province 83 permit", num("83000019491231002"), now, ErrArea, "not a resident identity card"},
		{"prefecture 00", num("11000519491231002"), now, ErrArea, "00 (digits 3-4) is not a prefecture"},
		{"prefecture 71", num("11710519491231002"), now, ErrArea, "71 (digits 3-4)"},
		{"county 00", num("11010019491231002"), now, ErrArea, "(digits 5-6) is not a county"},
		{"Feb 30", num("11010520230230002"), now, ErrBirthDate, "not a real calendar date"},
		{"Feb 29 not leap", num("11010519000229002"), now, ErrBirthDate, "not a real calendar date"},
		{"month 13", num("11010519491331002"), now, ErrBirthDate, "not a real calendar date"},
		{"day 00", num("11010519491200002"), now, ErrBirthDate, "not a real calendar date"},
		{"year 1899", num("11010518991231002"), now, ErrBirthDate, "before 1900"},
		{"year 1880 example", "440524188001010014", now, ErrBirthDate, "before 1900"},
		{"born tomorrow", num("11010520240602002"), now, ErrBirthDate, "after today"},
		{"year 9999", num("11010599991231002"), now, ErrBirthDate, "after today"},
		// 23:30 on 31 May in UTC+8 is 15:30 on 31 May in UTC: 1 June is
		// still tomorrow in China.
		{"born tomorrow in UTC+8", num("11010520240601002"), time.Date(2024, 5, 31, 15, 30, 0, 0, time.UTC), ErrBirthDate, "after today"},
		{"151 years old", "11010519491231002X", time.Date(2100, 12, 31, 0, 0, 0, 0, cst), ErrBirthDate, "more than 150 years old"},
		{"151 years old, leap day", num("11010519040229002"), time.Date(2055, 3, 1, 0, 0, 0, 0, cst), ErrBirthDate, "more than 150 years old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, info, err := Parse(tt.in, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			for _, other := range []error{ErrLength, ErrCharacters, ErrCheck, ErrArea, ErrBirthDate} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("err = %v also wraps %v", err, other)
				}
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("err = %q, want it to say %q", err, tt.says)
			}
			if !strings.Contains(err.Error(), ": check the number") && !strings.Contains(err.Error(), ": enter all") && !strings.Contains(err.Error(), ": only a mainland") {
				t.Errorf("err = %q does not say what to do", err)
			}
			if s := strings.Trim(tt.in, " "); len(s) >= 17 && strings.Contains(err.Error(), s[:17]) {
				t.Errorf("err = %q contains the number", err)
			}
			if n != "" || info != (Info{}) {
				t.Errorf("on error got %q, %+v; want zero values", n, info)
			}
		})
	}
}

// TestParseZone shows that "today" is the date in UTC+8, whatever the zone
// of now: at 00:30 on 1 June in China it is still 31 May in UTC (and 30 or
// 31 May in New York), yet someone born on 1 June is born today.
func TestParseZone(t *testing.T) {
	s := num("11010520240601002")
	utc := time.Date(2024, 5, 31, 16, 30, 0, 0, time.UTC)
	for _, at := range []time.Time{utc, utc.In(time.FixedZone("EDT", -4*3600)), utc.In(time.FixedZone("CST", 8*3600))} {
		if _, info, err := Parse(s, at); err != nil {
			t.Errorf("now %v: %v", at, err)
		} else if y, m, d := info.BirthDate.Date(); y != 2024 || m != 6 || d != 1 {
			t.Errorf("now %v: birth date %d-%d-%d", at, y, m, d)
		}
	}
	// A minute before midnight in China, the same number is born tomorrow.
	if _, _, err := Parse(s, time.Date(2024, 5, 31, 15, 59, 0, 0, time.UTC)); !errors.Is(err, ErrBirthDate) {
		t.Errorf("born tomorrow in UTC+8: err = %v, want ErrBirthDate", err)
	}
}

func TestParseAge(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	s := "11010519491231002X" // born 1949-12-31
	for _, tt := range []struct {
		now time.Time
		ok  bool
	}{
		{time.Date(2099, 12, 31, 0, 0, 0, 0, cst), true},         // exactly 150
		{time.Date(2100, 12, 30, 23, 59, 0, 0, cst), true},       // 150, a day short of 151
		{time.Date(2100, 12, 30, 16, 30, 0, 0, time.UTC), false}, // 00:30 on 31 Dec in UTC+8: 151
		{time.Date(2100, 12, 31, 0, 0, 0, 0, cst), false},        // exactly 151
	} {
		_, _, err := Parse(s, tt.now)
		if tt.ok && err != nil {
			t.Errorf("now %v: %v", tt.now, err)
		}
		if !tt.ok && !errors.Is(err, ErrBirthDate) {
			t.Errorf("now %v: err = %v, want ErrBirthDate", tt.now, err)
		}
	}
	// Born on 29 February: 150 on 28 February of a common year is not yet
	// passed, so the 151st birthday is 1 March.
	leap := num("11010519040229002")
	if _, _, err := Parse(leap, time.Date(2055, 2, 28, 12, 0, 0, 0, cst)); err != nil {
		t.Errorf("leap day, 150: %v", err)
	}
}

func TestRedacted(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"11010519491231002X", "11***************X"},
		{"110101199003074477", "11***************7"},
		{"", ""},
		{"123", "***"},
		{"1234", "12*4"},
	} {
		if got := Number(tt.in).Redacted(); got != tt.want {
			t.Errorf("Number(%q).Redacted() = %q, want %q", tt.in, got, tt.want)
		}
	}
	n, _, err := Parse(" 11010519491231002x", now)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Redacted(); got != "11***************X" || len(got) != 18 {
		t.Errorf("Redacted() = %q", got)
	}
}
