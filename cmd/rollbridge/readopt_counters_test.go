package main

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A re-adopted process keeps the counters the state file recorded for
// it, lastMemoryRestartAt included (docs/processes.md §11).
func TestReadoptionKeepsTheMemoryRestartCounters(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	flag := filepath.Join(dir, "grown-once")
	// The first run outgrows the limit; the one after the memory restart
	// stays small.
	d := startDaemon(t, `statePath: `+strconv.Quote(state)+`, processes: [
    {id: "worker", command: "if [ -e `+flag+` ]; then exec FIXTURE; else touch `+flag+`; exec FIXTURE -alloc-mb 64; fi",
     memory: {limitBytes: 33554432, checkIntervalMs: 50}},
    `+webProcess+`]`)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	var worker map[string]any
	waitUntil(t, "the worker's memory restart", 20*time.Second, func() bool {
		worker = processEntry(release(d.status(), "v1")["processes"], "worker")
		return worker["memoryRestarts"] == 1.0 && worker["state"] == "running"
	})
	if worker["lastMemoryRestartAt"] == nil {
		t.Fatalf("worker before the crash: %v", worker)
	}
	// The status says running from the spawn on, but the new copy is held
	// until the state file records it, and exits by itself if the daemon
	// dies first: the crash must come after it was let go.
	waitUntil(t, "the worker's new copy to run", 10*time.Second, func() bool {
		return sawEvent(d, "process started", map[string]string{"processId": "worker", "reason": "memory"})
	})
	d.crashDaemon()
	d.start()
	after := processEntry(release(d.status(), "v1")["processes"], "worker")
	if after["adoptedAt"] == nil || after["pid"] != worker["pid"] {
		t.Fatalf("the worker was not re-adopted: %v", after)
	}
	for _, key := range []string{"memoryRestarts", "restarts", "lastStartReason", "lastMemoryRestartAt", "startedAt"} {
		if after[key] != worker[key] {
			t.Errorf("%s: %v before the crash, %v after the re-adoption", key, worker[key], after[key])
		}
	}
}
