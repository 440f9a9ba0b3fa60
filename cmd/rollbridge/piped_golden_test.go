package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// typicalApp is the app of the output tests and of the status example in
// docs/cli.md#status: a web process, two worker replicas, a singleton and
// a persistent service. Its web process takes the lowest free port of a
// window of 40 picked at random in the upper half of the shared test
// range: most tests start at 20000, and a port another test's process
// binds between the daemon's check and its own bind would fail the
// deploy or, worse, answer its health check.
func typicalApp() string {
	from, to := randomPortWindow(20500, 20979, 40)
	web := fmt.Sprintf(`{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: %d, to: %d}, health: {intervalMs: 20}}`, from, to)
	return `processes: [
    ` + web + `,
    {id: "worker", command: "exec FIXTURE", replicas: 2},
    {id: "scheduler", policy: "singleton", command: "exec FIXTURE"},
    {id: "cache", policy: "service", command: "exec FIXTURE"},
  ]`
}

// Volatile values of a command's output, replaced by normalizeOutput so a
// golden file pins everything else byte for byte.
var (
	isoTime = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	digest  = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
	// Numbers that differ between runs: pids, sizes, uptimes, durations
	// (keys ending in Ms) and ports (the proxy's, and the web process's
	// under "ports"), in indented and in compact JSON.
	volatileNumber = regexp.MustCompile(`("(?:pid|pgid|rssBytes|port|web|[A-Za-z]*Ms)": ?)-?\d+(?:\.\d+)?`)
)

// normalizeOutput replaces what differs between runs (documented in
// testdata/output/README.md): the test's directory by <dir>, the
// binaries' directory by <bin>, times by <time>, SHA-256 digests by
// <digest>, and the numbers volatileNumber matches by <n>.
func normalizeOutput(s, dir string) string {
	s = strings.ReplaceAll(s, dir, "<dir>")
	s = strings.ReplaceAll(s, filepath.Dir(binary), "<bin>")
	s = isoTime.ReplaceAllString(s, "<time>")
	s = digest.ReplaceAllString(s, "<digest>")
	return volatileNumber.ReplaceAllString(s, "${1}<n>")
}

// outputGolden compares got with testdata/output/<name>.golden, or writes
// it with -update.
func outputGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "output", name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("piped output differs from %s\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// transcript is one command's run as a golden file holds it.
func transcript(d *testDaemon, args []string, r result) string {
	return fmt.Sprintf("$ rollbridge %s\nexit %d\n-- stdout --\n%s-- stderr --\n%s",
		normalizeOutput(strings.Join(args, " "), d.dir), r.code, normalizeOutput(r.stdout, d.dir), normalizeOutput(r.stderr, d.dir))
}

// waitReleaseState waits until release id is in state.
func waitReleaseState(t *testing.T, d *testDaemon, id, state string) {
	t.Helper()
	waitUntil(t, id+" "+state, 20*time.Second, func() bool {
		r := release(d.status(), id)
		return r != nil && r["state"] == state
	})
}

// The JSON results of the commands, piped, are byte for byte what the
// Node.js-compatible build printed before the terminal forms existed: the
// golden files under testdata/output were recorded with that build.
func TestPipedOutputGolden(t *testing.T) {
	d := startDaemon(t, typicalApp())
	rel := d.releasePath
	step := func(name string, args ...string) result {
		t.Helper()
		r := d.cli(args...)
		outputGolden(t, name, transcript(d, args, r))
		return r
	}
	step("ensure-daemon", "ensure-daemon")
	step("deploy-first", "deploy", "--release-path", rel("r1"), "--release-id", "r1", "--revision", "abc1111")
	step("deploy", "deploy", "--release-path", rel("r2"), "--release-id", "r2", "--revision", "def2222")
	waitReleaseState(t, d, "r1", "stopped")
	step("status", "status")
	step("restart", "restart")
	step("restart-process", "restart", "--process", "worker#1")
	step("rollback", "rollback")
	waitReleaseState(t, d, "r2", "stopped")
	step("stop-stopped", "stop", "--release-id", "r2")
	step("stop", "stop")
	// The stop's reply comes after its last event: a stable tail to show.
	step("events-limit", "events", "--limit", "1")
	step("events-limit-json", "events", "--limit", "1", "--json")
	step("status-stopped", "status")
	d.status()
	step("shutdown", "shutdown")
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not exit after shutdown")
	}
	// The daemon's own log, on a pipe: its start-up lines come in a fixed
	// order (the rest interleaves with the processes' events).
	lines := strings.SplitAfter(d.stdout.String(), "\n")
	if len(lines) < 2 {
		t.Fatalf("the daemon logged %q", d.stdout.String())
	}
	outputGolden(t, "daemon-log-start", normalizeOutput(lines[0]+lines[1], d.dir))
}
