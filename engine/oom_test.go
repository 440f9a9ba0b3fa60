package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// The daemon lowers an oom_score_adj nobody chose (0) and keeps one that
// somebody chose; a write the kernel refuses changes nothing.
func TestLowerOOMScore(t *testing.T) {
	old := oomScorePath
	t.Cleanup(func() { oomScorePath = old })
	dir := t.TempDir()
	for _, tc := range []struct {
		name, start, want string
		lowered           bool
	}{
		{"nobody chose", "0\n", "-900", true},
		{"a unit chose", "-500\n", "-500\n", false},
		{"a parent raised it", "300\n", "300\n", false},
		{"unreadable value", "x\n", "x\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oomScorePath = filepath.Join(dir, tc.name)
			os.WriteFile(oomScorePath, []byte(tc.start), 0o600)
			if got := lowerOOMScore(); got != tc.lowered {
				t.Fatalf("lowered = %v, want %v", got, tc.lowered)
			}
			if b, _ := os.ReadFile(oomScorePath); string(b) != tc.want {
				t.Fatalf("oom_score_adj %q, want %q", b, tc.want)
			}
		})
	}
	oomScorePath = filepath.Join(dir, "missing", "oom_score_adj")
	if lowerOOMScore() {
		t.Fatal("a missing file was lowered")
	}
}
