package jsconfig

import (
	"path/filepath"
	"testing"
)

// BenchmarkLoadTensorBuzz loads, evaluates and validates the TensorBuzz
// example in-process: esbuild bundling, goja evaluation and decoding.
func BenchmarkLoadTensorBuzz(b *testing.B) {
	abs, err := filepath.Abs("../examples/tensorbuzz.com.js")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(abs, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
