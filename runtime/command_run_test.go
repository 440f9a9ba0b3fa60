package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A command whose record fails never runs; one that records runs with its
// output captured; one past its deadline is stopped and says so.
func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	refused := errors.New("no room on disk")
	var out bytes.Buffer
	res := RunCommand(context.Background(), Command{
		Command: "touch ran; echo out; echo err >&2; exit 4", Dir: dir, Output: &out,
		Record:   func(pid int, _ uint64) error { return refused },
		Deadline: time.Now().Add(10 * time.Second), ReadGrace: time.Second,
	})
	if !errors.Is(res.Unrecorded, refused) || res.ExitCode != nil || out.Len() != 0 {
		t.Fatalf("unrecorded run: %+v, output %q", res, out.String())
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the unrecorded command ran: %v", err)
	}

	var recorded int
	res = RunCommand(context.Background(), Command{
		Command: "touch ran; echo out; echo err >&2; exit 4", Dir: dir, Output: &out,
		Record:   func(pid int, _ uint64) error { recorded = pid; return nil },
		Deadline: time.Now().Add(10 * time.Second), ReadGrace: time.Second,
	})
	if res.ExitCode == nil || *res.ExitCode != 4 || res.Signal != nil || recorded == 0 || out.String() != "out\nerr\n" {
		t.Fatalf("run: %+v, recorded pid %d, output %q", res, recorded, out.String())
	}

	res = RunCommand(context.Background(), Command{
		Command: "exec sleep 30", Dir: dir, Output: &bytes.Buffer{},
		Deadline: time.Now().Add(100 * time.Millisecond), KillAfter: 5 * time.Second, ReadGrace: time.Second,
	})
	if !res.TimedOut || res.Signal == nil || *res.Signal != "SIGTERM" {
		t.Fatalf("timed-out run: %+v", res)
	}
}
