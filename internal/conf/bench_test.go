package conf

import (
	"strings"
	"testing"
)

func BenchmarkDecodeExample(b *testing.B) {
	src := []byte(fullExample)
	for b.Loop() {
		c := defaults()
		if err := Decode("x", src, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeWorst decodes a file of the largest size made of long
// arrays, the most work per byte.
func BenchmarkDecodeWorst(b *testing.B) {
	src := []byte(strings.Repeat("[gate]\ncodes = ["+strings.Repeat("1,", 30000)+"]\n", 18)[:maxFileSize])
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		var c config
		Decode("x", src, &c)
	}
}
