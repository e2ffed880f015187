package config_test

import (
	"os"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"gateagent/config"
)

// BenchmarkParseExample reads the example config: go-toml three times (the
// syntax, the shape, the values), then Validate.
func BenchmarkParseExample(b *testing.B) {
	src, err := os.ReadFile(example)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := config.Parse("gateagent.toml", src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseFloor is one go-toml read of the same file into a map.
func BenchmarkParseFloor(b *testing.B) {
	src, err := os.ReadFile(example)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var doc map[string]any
		if err := toml.Unmarshal(src, &doc); err != nil {
			b.Fatal(err)
		}
	}
}
