// Package plural writes counts as English does: "1 certificate",
// "2 certificates", "0 certificates".
package plural

import "strconv"

// Integer is any integer type a count comes in.
type Integer interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// N returns n followed by one when n is 1, by many otherwise:
// N(1, "code", "codes") is "1 code".
func N[T Integer](n T, one, many string) string {
	var s string
	if n < 0 {
		s = strconv.FormatInt(int64(n), 10)
	} else {
		s = strconv.FormatUint(uint64(n), 10)
	}
	return s + " " + Word(n, one, many)
}

// Word returns one when n is 1, many otherwise.
func Word[T Integer](n T, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
