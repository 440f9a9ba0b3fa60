package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// readBack returns everything the terminal has shown so far. The
// terminal is a queue: once a marker written after the command's output
// is read back, all that the command printed has been read too.
func readBack(t *testing.T, term *os.File, seen *syncBuffer) string {
	t.Helper()
	end := fmt.Sprintf("-- end of output %d --", readBackMarks.Add(1))
	fmt.Fprintln(term, end)
	waitTerminal(t, seen, end)
	out := seen.String()
	return out[:strings.Index(out, end)]
}

var readBackMarks atomic.Int64

// recordPTY opens a pseudo-terminal and records everything written to
// its terminal side; ctl is there to type into it.
func recordPTY(t *testing.T) (ctl, term *os.File, seen *syncBuffer) {
	t.Helper()
	ctl, term = openPTY(t)
	seen = &syncBuffer{}
	go io.Copy(seen, ctl)
	return ctl, term, seen
}

// openPTY returns a pseudo-terminal pair: what is written to the terminal
// side can be read from the controlling side.
func openPTY(t *testing.T) (ctl, term *os.File) {
	t.Helper()
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ctl.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ctl.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	term, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close(); term.Close() })
	return ctl, term
}

// A deploy shows its steps on a terminal; piped, stderr stays empty and
// stdout holds only the JSON result either way.
func TestDeployProgressOnATerminal(t *testing.T) {
	d := startDaemon(t, `processes: [{id: "worker", command: "exec FIXTURE"}, {id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: 20000, to: 20999}, health: {startDelayMs: 400, intervalMs: 20}}]`)
	d.deploy("v1")
	_, term, seen := recordPTY(t)
	rel := filepath.Join(d.dir, "releases", "v2")
	os.MkdirAll(rel, 0o755)
	cmd := exec.Command(binary, "deploy", "-c", d.config, "--release-path", rel, "--release-id", "v2")
	var stdout strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, term
	if err := cmd.Run(); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if stdout.String() != "{\n  \"status\": \"success\",\n  \"activeReleaseId\": \"v2\",\n  \"previousReleaseId\": \"v1\"\n}\n" {
		t.Fatalf("stdout %q", stdout.String())
	}
	for _, want := range []string{"→ deploying v2 (" + rel + ")", "started worker (pid ", "started web (pid ", "waiting for web's health check… ", "health check passed after ", "✓ traffic switched to v2"} {
		waitUntil(t, "the terminal to show "+want, 10*time.Second, func() bool { return strings.Contains(seen.String(), want) })
	}
	// Piped: nothing on stderr.
	r := d.deploy("v3")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("piped deploy: %+v", r)
	}
	// A restart on a terminal.
	cmd = exec.Command(binary, "restart", "-c", d.config, "--process", "worker")
	stdout.Reset()
	cmd.Stdout, cmd.Stderr = &stdout, term
	if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), `"restarted": [`) {
		t.Fatalf("restart: %v %q", err, stdout.String())
	}
	for _, want := range []string{"restarting worker…", "worker running again (pid "} {
		waitUntil(t, "the terminal to show "+want, 10*time.Second, func() bool { return strings.Contains(seen.String(), want) })
	}
}

// After a deploy on a terminal, the release that lost the traffic gets a
// draining line only while requests are open on it, with "connection" for
// one: never "draining 0 open connections", also while its processes are
// still stopping.
func TestDeployProgressDrainingLine(t *testing.T) {
	// The web process ignores SIGTERM, so a drained release stays
	// "draining" for gracefulStopMs while its web process is stopped.
	d := startDaemon(t, `processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen -ignore SIGTERM", gracefulStopMs: 5000, port: {from: 20000, to: 20999}, health: {intervalMs: 20}}]`)
	d.deploy("v1")
	_, term, seen := recordPTY(t)
	// deployOnTerminal deploys id with stderr on the terminal and returns
	// what the terminal showed for it.
	deployOnTerminal := func(id string) string {
		t.Helper()
		cmd := exec.Command(binary, "deploy", "-c", d.config, "--release-path", d.releasePath(id), "--release-id", id)
		cmd.Stdout, cmd.Stderr = io.Discard, term
		if err := cmd.Run(); err != nil {
			t.Fatalf("deploy %s: %v", id, err)
		}
		all := readBack(t, term, seen)
		start := strings.Index(all, "→ deploying "+id+" ")
		if start < 0 {
			t.Fatalf("deploy %s: no progress on the terminal:\n%s", id, all)
		}
		return all[start:]
	}
	// hold keeps n slow requests open on the active release until cancel.
	hold := func(id string, n int) (cancel func()) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		for i := 0; i < n; i++ {
			go func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", d.url("/slow?ms=60000"), nil)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
		waitUntil(t, fmt.Sprintf("%d open requests on %s", n, id), 10*time.Second, func() bool {
			r := release(d.status(), id)
			return r != nil && r["connectionCount"] == float64(n)
		})
		return cancel
	}

	out := deployOnTerminal("v2")
	if r := release(d.status(), "v1"); r == nil || r["state"] != "draining" {
		t.Fatalf("v1 should still drain (its web process stops slowly): %v", r)
	}
	if !strings.Contains(out, "✓ traffic switched to v2") || strings.Contains(out, "draining") {
		t.Errorf("nothing open on v1, so no draining line:\n%s", out)
	}

	cancel := hold("v2", 1)
	out = deployOnTerminal("v3")
	cancel()
	if !strings.Contains(out, "  v2 is draining 1 open connection (up to 30 s)\r\n") {
		t.Errorf("one request open on v2:\n%s", out)
	}

	cancel = hold("v3", 2)
	out = deployOnTerminal("v4")
	cancel()
	if !strings.Contains(out, "  v3 is draining 2 open connections (up to 30 s)\r\n") {
		t.Errorf("two requests open on v3:\n%s", out)
	}

	// With stdout on the terminal too, the summary says what v4 drains
	// and the progress does not say it again.
	cancel = hold("v4", 1)
	out, code := runOnPTY(t, []string{"NO_COLOR=1"}, "deploy", "-c", d.config, "--release-path", d.releasePath("v5"), "--release-id", "v5")
	cancel()
	if code != 0 || !strings.Contains(out, "\n  previous v4 draining, 1 open connection\n") || strings.Contains(out, "is draining") {
		t.Errorf("one request open on v4, summary on the terminal: exit %d\n%s", code, out)
	}
}
