package jsconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzLoad feeds arbitrary bytes to the loader as rollbridge.js. Whatever
// the input, Check returns (no panic, no hang past its deadline) with
// either a load error or a plan whose issues, if any, all have texts.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("../testdata/configs/*/rollbridge.*")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			continue // a directory case
		}
		// Seeds that run commands or read files would let mutations do so too.
		if src := string(data); strings.Contains(src, "child_process") || strings.Contains(src, "readFileSync") {
			continue
		}
		f.Add(data)
	}
	for _, s := range []string{"", "export default", "export default {", "module.exports = 1", "\xef\xbb\xbf#!x\n", "await 1",
		"export default () => new Promise(() => {})", `export default {processes: [{port: {from: 1e400}}]}`, "import x from './x.js'"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "rollbridge.js")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		plan, issues, err := Check(p, Options{Timeout: time.Second, Stdout: discard{}, Stderr: discard{}})
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("load took %v despite a 1s deadline", took)
		}
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || le.Message == "" {
				t.Fatalf("load failed without a load error message: %#v", err)
			}
			return
		}
		if plan == nil {
			t.Fatal("no plan and no error")
		}
		for _, is := range issues {
			if is.Message == "" || is.Fix == "" {
				t.Fatalf("issue without text: %+v", is)
			}
		}
		if _, err := plan.MarshalJSON(); err != nil {
			t.Fatal(err)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
