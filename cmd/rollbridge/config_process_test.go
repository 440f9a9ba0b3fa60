package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A config the daemon loads sees the daemon's pid as process.pid and the
// daemon's parent as process.ppid, as under the Node.js rollbridge, which
// evaluates it in the daemon itself. A managed process that got
// process.pid through its env and sends it SIGTERM reaches the daemon,
// which shuts down cleanly. (Loaded in the daemon's child process, the
// config used to see the child's pid: the signal went to a dead pid.)
func TestConfigProcessPidIsTheDaemons(t *testing.T) {
	side := t.TempDir()
	seen := filepath.Join(side, "seen")
	trigger := filepath.Join(side, "trigger")
	if err := syscall.Mkfifo(trigger, 0o600); err != nil {
		t.Fatal(err)
	}
	// The web process records what it got, then, once the test writes to
	// the FIFO, signals the pid it was given.
	command := fmt.Sprintf(`echo "$ROLLBRIDGE_TEST_DAEMON_PID $ROLLBRIDGE_TEST_DAEMON_PPID" > %s.tmp && mv %s.tmp %s; `+
		`(read _ < %s && kill -TERM "$ROLLBRIDGE_TEST_DAEMON_PID") & exec FIXTURE -listen`, seen, seen, seen, trigger)
	d := startDaemon(t, fmt.Sprintf(`processes: [{id: "web", policy: "proxied", command: %q,
    port: {from: 20000, to: 20999}, health: {intervalMs: 20},
    env: {ROLLBRIDGE_TEST_DAEMON_PID: String(process.pid), ROLLBRIDGE_TEST_DAEMON_PPID: String(process.ppid)}}]`, command))
	if r := d.deploy("r1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}

	var got string
	waitUntil(t, "the web process to record its env", 10*time.Second, func() bool {
		data, err := os.ReadFile(seen)
		got = strings.TrimSpace(string(data))
		return err == nil
	})
	want := strconv.Itoa(d.cmd.Process.Pid) + " " + strconv.Itoa(os.Getpid())
	if got != want {
		t.Fatalf("process.pid and process.ppid in the daemon's config were %q, want the daemon's pid and its parent's %q", got, want)
	}

	// Let the process send its signal.
	opened := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(trigger, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString("go\n")
			f.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		// Release the blocked writer before failing.
		if f, err := os.OpenFile(trigger, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("the web process never read the trigger")
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon did not exit after the web process sent SIGTERM to %s\nstderr: %s", got, d.stderr.String())
	}
	if d.exitErr != nil {
		t.Fatalf("the daemon's exit after SIGTERM: %v\nstderr: %s", d.exitErr, d.stderr.String())
	}
}
