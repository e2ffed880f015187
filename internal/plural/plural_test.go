package plural

import "testing"

func TestN(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{N(0, "certificate", "certificates"), "0 certificates"},
		{N(1, "certificate", "certificates"), "1 certificate"},
		{N(2, "certificate", "certificates"), "2 certificates"},
		{N(uint64(1), "code", "codes"), "1 code"},
		{N(uint64(18446744073709551615), "code", "codes"), "18446744073709551615 codes"},
		{N(-1, "day", "days"), "-1 days"},
		{N(int64(-9223372036854775808), "day", "days"), "-9223372036854775808 days"},
		{N(1, "over-long line", "over-long lines"), "1 over-long line"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
	if Word(1, "is", "are") != "is" || Word(3, "is", "are") != "are" {
		t.Error("Word")
	}
}
