package runtime

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// A daemon that lowered its own oom_score_adj does not pass it on: a
// gated child sets the value SetChildOOMScoreAdj gave before its command
// runs, and inherits the daemon's without it. The test raises its own
// value to stand for the daemon's (raising needs no privilege; lowering
// it, as the daemon does, needs CAP_SYS_RESOURCE) and puts it back.
func TestGatedChildRunsWithTheChildOOMScoreAdj(t *testing.T) {
	const self = "/proc/self/oom_score_adj"
	raw, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(self, bytes.TrimSpace(raw), 0); err != nil {
			t.Errorf("restoring oom_score_adj: %v", err)
		}
		childOOMScoreAdj.Store(nil)
	})
	if err := os.WriteFile(self, []byte("300"), 0); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		t.Helper()
		cmd, readEnd, gate, err := gatedCommand("cat /proc/self/oom_score_adj")
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd.Stdout = &out
		err = cmd.Start()
		readEnd.Close() // the child has its own copy
		if err != nil {
			gate.drop()
			t.Fatal(err)
		}
		gate.open()
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	if got := run(); got != "300" {
		t.Fatalf("without a child value the child has %s, want the inherited 300", got)
	}
	SetChildOOMScoreAdj(0)
	if got := run(); got != "0" {
		t.Fatalf("the child runs with oom_score_adj %s, want 0", got)
	}
	SetChildOOMScoreAdj(500)
	if got := run(); got != "500" {
		t.Fatalf("the child runs with oom_score_adj %s, want 500", got)
	}
}
