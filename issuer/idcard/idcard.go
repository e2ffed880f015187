// Package idcard validates the number of a Chinese resident identity card
// (居民身份证), for the reference issuer of the electronic temporary ID
// certificate: only holders of such a card may have one.
//
// A number is 18 characters, 17 digits and a check character (0-9 or X),
// per GB 11643-1999: a 6-digit area code, an 8-digit birth date (YYYYMMDD),
// a 3-digit sequence whose last digit is even for women, and the ISO 7064
// MOD 11-2 check character. Parse also requires the area code and birth date
// to be plausible. Error messages say what is wrong and what to do, but never
// repeat the number: they may be logged.
package idcard

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Number is a validated resident identity card number (18 characters, upper-case X).
type Number string

// Info is what a number says of its holder, for the issuer's checks only; never log it.
type Info struct {
	Area      string    // 6 digits
	Province  string    // 2 digits
	BirthDate time.Time // midnight UTC+8 of the birth date, in a fixed zone named "CST" offset +8h
	Sequence  string    // 3 digits
	Female    bool      // 17th digit even
}

// The errors of Parse; each error it returns wraps exactly one of them.
var (
	ErrLength     = errors.New("not 18 characters")
	ErrCharacters = errors.New("invalid character")
	ErrCheck      = errors.New("wrong check character")
	ErrArea       = errors.New("implausible area code")
	ErrBirthDate  = errors.New("implausible birth date")
)

// Error is a number Parse refused.
type Error struct {
	Kind   error  // ErrLength, ErrCharacters, ErrCheck, ErrArea or ErrBirthDate
	Detail string // what is wrong, in words the applicant can act on
}

func (e *Error) Error() string { return "idcard: " + e.Reason() }

// Reason is what is wrong, for the applicant: the kind and the detail.
func (e *Error) Reason() string { return e.Kind.Error() + ": " + e.Detail }

func (e *Error) Unwrap() error { return e.Kind }

func refuse(kind error, format string, a ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, a...)}
}

// length is the length of a resident identity card number.
const length = 18

// maxAge is the greatest age, in completed years, that Parse accepts.
const maxAge = 150

// cst is China Standard Time, the zone of birth dates and of "today".
var cst = time.FixedZone("CST", 8*60*60)

// weights are the ISO 7064 MOD 11-2 weights of the first 17 digits.
var weights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// checkChars maps the weighted sum mod 11 to the check character.
const checkChars = "10X98765432"

// provinces are the mainland province-level codes of GB/T 2260.
var provinces = map[string]bool{
	"11": true, "12": true, "13": true, "14": true, "15": true,
	"21": true, "22": true, "23": true,
	"31": true, "32": true, "33": true, "34": true, "35": true, "36": true, "37": true,
	"41": true, "42": true, "43": true, "44": true, "45": true, "46": true,
	"50": true, "51": true, "52": true, "53": true, "54": true,
	"61": true, "62": true, "63": true, "64": true, "65": true,
}

// nonMainland are the leading codes of Taiwan (71), Hong Kong (81), Macao
// (82) and residence permits for Taiwan residents (83): not resident
// identity cards.
var nonMainland = map[string]bool{"71": true, "81": true, "82": true, "83": true}

// Parse validates s against now and returns the normalized number and its Info.
//
// Surrounding ASCII spaces are trimmed and a lower-case check character x is
// taken as X. The checks run in order: length (in bytes), characters, check
// character, area code, birth date; the first failure is returned, wrapping
// ErrLength, ErrCharacters, ErrCheck, ErrArea or ErrBirthDate. The birth date
// must be a real date, in 1900 or later, not after today in UTC+8, and the
// holder at most 150 years old today.
func Parse(s string, now time.Time) (Number, Info, error) {
	s = strings.Trim(s, " ")
	if len(s) != length {
		return "", Info{}, refuse(ErrLength, "the number has %d characters, a resident identity card number has 18: enter all 18 characters, without spaces", len(s))
	}
	for i := range length - 1 {
		if !isDigit(s[i]) {
			return "", Info{}, refuse(ErrCharacters, "character %d is not a digit, but the first 17 are all digits: check the number against the card", i+1)
		}
	}
	last := s[length-1]
	if last == 'x' {
		last = 'X'
		s = s[:length-1] + "X"
	}
	if !isDigit(last) && last != 'X' {
		return "", Info{}, refuse(ErrCharacters, "the 18th character is neither a digit nor X: check the number against the card")
	}
	if want := CheckChar(s[:length-1]); last != want {
		return "", Info{}, refuse(ErrCheck, "the check character is %c but the number ends in %c: check the number against the card", want, last)
	}
	if err := checkArea(s[:6]); err != nil {
		return "", Info{}, err
	}
	birth, err := birthDate(s[6:14], now)
	if err != nil {
		return "", Info{}, err
	}
	return Number(s), Info{
		Area:      s[:6],
		Province:  s[:2],
		BirthDate: birth,
		Sequence:  s[14:17],
		Female:    (s[16]-'0')%2 == 0,
	}, nil
}

// CheckChar returns the GB 11643 check character for the first 17 digits (panics never; returns 0 if input not 17 ASCII digits).
func CheckChar(first17 string) byte {
	if len(first17) != length-1 {
		return 0
	}
	sum := 0
	for i, w := range weights {
		c := first17[i]
		if !isDigit(c) {
			return 0
		}
		sum += int(c-'0') * w
	}
	return checkChars[sum%11]
}

// Redacted returns the number with all but the first 2 and last 1 characters replaced by '*', for messages shown to the applicant (never for logs).
//
// A Number of 3 bytes or fewer (never one from Parse) is all '*'.
func (n Number) Redacted() string {
	if len(n) <= 3 {
		return strings.Repeat("*", len(n))
	}
	return string(n[:2]) + strings.Repeat("*", len(n)-3) + string(n[len(n)-1:])
}

// checkArea checks the 6-digit area code: a mainland province, a prefecture
// 01..70 or 90, a county 01..99.
func checkArea(area string) error {
	province, prefecture, county := area[:2], area[2:4], area[4:6]
	if nonMainland[province] {
		return refuse(ErrArea, "numbers starting %s are Hong Kong, Macao or Taiwan residence-permit or other non-mainland numbers, not a resident identity card: only a mainland resident identity card can be used", province)
	}
	if !provinces[province] {
		return refuse(ErrArea, "%s (the first 2 digits) is not a mainland province code: check the number against the card", province)
	}
	if p := twoDigits(prefecture); (p < 1 || p > 70) && p != 90 {
		return refuse(ErrArea, "%s (digits 3-4) is not a prefecture code: check the number against the card", prefecture)
	}
	if twoDigits(county) == 0 {
		return refuse(ErrArea, "00 (digits 5-6) is not a county code: check the number against the card")
	}
	return nil
}

// birthDate checks the 8 digits YYYYMMDD against now and returns the date
// at midnight CST. The messages leave the date out: it is personal data.
func birthDate(ymd string, now time.Time) (time.Time, error) {
	y := 100*twoDigits(ymd[0:2]) + twoDigits(ymd[2:4])
	m, d := twoDigits(ymd[4:6]), twoDigits(ymd[6:8])
	birth := time.Date(y, time.Month(m), d, 0, 0, 0, 0, cst)
	if birth.Year() != y || int(birth.Month()) != m || birth.Day() != d {
		return time.Time{}, refuse(ErrBirthDate, "digits 7-14 are not a real calendar date (YYYYMMDD): check the number against the card")
	}
	if y < 1900 {
		return time.Time{}, refuse(ErrBirthDate, "the birth year (digits 7-10) is before 1900: check the number against the card")
	}
	ty, tm, td := now.In(cst).Date()
	today := time.Date(ty, tm, td, 0, 0, 0, 0, cst)
	if birth.After(today) {
		return time.Time{}, refuse(ErrBirthDate, "the birth date (digits 7-14) is after today (China Standard Time): check the number against the card")
	}
	age := ty - y
	if tm < birth.Month() || tm == birth.Month() && td < d {
		age--
	}
	if age > maxAge {
		return time.Time{}, refuse(ErrBirthDate, "the birth date (digits 7-14) makes the holder more than %d years old: check the number against the card", maxAge)
	}
	return birth, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// twoDigits returns the value of two ASCII digits, already checked.
func twoDigits(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }
