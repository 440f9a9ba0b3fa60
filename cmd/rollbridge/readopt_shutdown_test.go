package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A SIGTERM (systemctl stop) that reaches a restarted daemon while it is
// still re-adopting stops the application like a SIGTERM a moment later
// would: under KillMode=process nobody else stops it, so processes the
// daemon lets go at that point run on unsupervised after the stop.
func TestShutdownDuringReadoptionStopsTheApplication(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	ready := filepath.Join(dir, "ready")
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, `statePath: `+strconv.Quote(state)+`, processes: [
    {id: "worker", command: "exec FIXTURE"},
    {id: "web", policy: "proxied", command: "exec FIXTURE -listen -ready-file `+ready+`", port: {from: 20000, to: 20999},
     health: {path: "/ready", intervalMs: 20, timeoutMs: 60000}}]`)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	before := pidsOf(d.status())
	if len(before) != 2 {
		t.Fatalf("pids: %v", before)
	}
	d.crashDaemon()
	// The web process now fails its health check, which keeps the next
	// daemon in its re-adoption until the signal comes.
	os.Remove(ready)
	os.Remove(ready + ".probed")
	d.ready = func() bool { _, err := os.Stat(ready + ".probed"); return err == nil }
	d.start()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon did not exit after SIGTERM\n%s", d.stdout.String())
	}
	for id, pid := range before {
		if alive(pid) {
			t.Errorf("%s (pid %d) still runs after the daemon stopped", id, pid)
		}
	}
	if !strings.Contains(d.stdout.String(), "re-adoption refused") {
		t.Errorf("no re-adoption refused event:\n%s", d.stdout.String())
	}
}
