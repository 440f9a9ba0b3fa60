package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runDemo runs examples/demo/run.sh with this test's binaries and a
// scratch TMPDIR; it returns the result and that TMPDIR.
func runDemo(t *testing.T, rollbridgeBin string) (result, string) {
	t.Helper()
	dir := t.TempDir()
	demo := filepath.Join(dir, "demo")
	if out, err := exec.Command("go", "build", "-o", demo, "../../examples/demo").CombinedOutput(); err != nil {
		t.Fatalf("building the demo app: %v\n%s", err, out)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	// A demo that leaves a process behind holding its output must fail
	// the test, not hang it: the script runs in its own process group,
	// which is killed after two minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../examples/demo/run.sh")
	cmd.Env = append(os.Environ(), "ROLLBRIDGE_BIN="+rollbridgeBin, "DEMO_BIN="+demo, "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	r := runToEnd(t, cmd)
	// Whatever of the group is still running once the script has ended
	// was left behind.
	if err := syscall.Kill(-cmd.Process.Pid, 0); err == nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Errorf("the demo left processes running in its process group")
	}
	if ctx.Err() != nil {
		t.Fatalf("the demo did not end within two minutes: %+v", r)
	}
	return r, tmp
}

// make demo ends with one summary line, not JSON, names no file it
// deletes, and leaves nothing behind.
func TestDemoEndsWithASummary(t *testing.T) {
	r, tmp := runDemo(t, binary)
	m := regexp.MustCompile(`^==> starting the daemon
==> proxy listening on http://127\.0\.0\.1:\d+/
==> deploying release v1
==> deploying release v2 while 8 clients send requests through the proxy
==> shutting down

([\d,]+) requests during the v1 → v2 deploy, 0 failed; v1 answered ([\d,]+), v2 ([\d,]+)
$`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil || r.stderr != "" {
		t.Fatalf("make demo: %+v", r)
	}
	n := func(s string) int {
		v, err := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if total, v1, v2 := n(m[1]), n(m[2]), n(m[3]); total != v1+v2 || v1 == 0 || v2 == 0 {
		t.Fatalf("counts do not add up: %s", m[0])
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("left behind in TMPDIR: %v", left)
	}
}

// A demo whose deploy fails shows the end of the daemon's log before it
// removes it, stops everything and exits non-zero.
func TestDemoFailureShowsTheDaemonLog(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "rollbridge")
	// The v2 deploy names a release directory that does not exist.
	script := `#!/bin/sh
if [ "$1" = deploy ] && [ "$7" = v2 ]; then exec ` + binary + ` deploy -c "$3" --release-path /nonexistent/v2 --release-id v2; fi
exec ` + binary + ` "$@"
`
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r, tmp := runDemo(t, wrapper)
	if r.code == 0 || !strings.Contains(r.stderr, "Error: cannot start web: working directory /nonexistent/v2 does not exist\n==> the demo failed; the last lines of the daemon's log:\n") ||
		!strings.Contains(r.stderr, `"message":"deploy failed"`) {
		t.Fatalf("failed demo: %+v", r)
	}
	if strings.Contains(r.stdout, "requests during") {
		t.Fatalf("a summary after a failure: %q", r.stdout)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("left behind in TMPDIR: %v", left)
	}
}
