package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge/jsconfig"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/configs")

// TestValidateGolden runs `validate` and `validate --json` on every config
// under testdata/configs and compares streams, exit codes and (for valid
// configs) the normalized plan with the case's expected.golden. Absolute paths are written as <case>.
func TestValidateGolden(t *testing.T) {
	root, err := filepath.Abs("../../testdata/configs")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		n++
		dir := filepath.Join(root, c.Name())
		t.Run(c.Name(), func(t *testing.T) {
			config := entryConfig(t, dir)
			var got strings.Builder
			for _, args := range [][]string{{"validate", "-c", config}, {"validate", "-c", config, "--json"}} {
				var stdout, stderr bytes.Buffer
				code := run(args, &stdout, &stderr)
				fmt.Fprintf(&got, "$ rollbridge validate%s\nexit %d\n-- stdout --\n%s-- stderr --\n%s",
					map[bool]string{true: " --json"}[len(args) == 4], code, stdout.String(), stderr.String())
			}
			// A valid config also records its normalized plan, so defaults and
			// value conversion are pinned too.
			if plan, issues, err := jsconfig.Check(config, jsconfig.Options{Stdout: io.Discard, Stderr: io.Discard}); err == nil && len(issues) == 0 {
				got.WriteString("-- normalized --\n")
				if err := jsconfig.WriteJSON(&got, plan); err != nil {
					t.Fatal(err)
				}
			}
			text := strings.ReplaceAll(got.String(), dir, "<case>")
			golden := filepath.Join(dir, "expected.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run the test with -update to create it)", err)
			}
			if text != string(want) {
				t.Errorf("output differs from %s\n--- got ---\n%s\n--- want ---\n%s", golden, text, want)
			}
		})
	}
	if n < 40 {
		t.Errorf("only %d golden config cases; the suite must keep at least 40", n)
	}
}

// entryConfig is the case's rollbridge.* entry, or a rollbridge.js that
// does not exist (the missing-file case).
func entryConfig(t *testing.T, dir string) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "rollbridge.*"))
	if err != nil {
		t.Fatal(err)
	}
	switch len(matches) {
	case 0:
		return filepath.Join(dir, "rollbridge.js")
	case 1:
		return matches[0]
	}
	t.Fatalf("%s has several rollbridge.* entries: %v", dir, matches)
	return ""
}
