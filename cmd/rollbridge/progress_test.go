package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

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
	ctl, term := openPTY(t)
	seen := &syncBuffer{}
	go io.Copy(seen, ctl)
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
