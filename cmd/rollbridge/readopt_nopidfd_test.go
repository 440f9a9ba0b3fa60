package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Where pidfd_open is missing (a kernel before 5.3, or a syscall filter
// that denies it) no process can be adopted. The daemon must then leave
// them all orphans, as the docs say, and never start a second copy of a
// process that still runs: a singleton running twice, a web process
// fighting its twin for the port.
func TestReadoptionWithoutPidfdStartsNoSecondCopy(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	lock := filepath.Join(dir, "cron.lock")
	d := startDaemon(t, `statePath: `+strconv.Quote(state)+`, processes: [
    {id: "cron", policy: "singleton", command: "exec FIXTURE -exclusive `+lock+`"},
    {id: "worker", command: "exec FIXTURE"},
    `+webProcess+`]`)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	before := pidsOf(d.status())
	d.crashDaemon()
	d.wrap = []string{fixture, "-without-pidfd"}
	d.start()
	s := d.status()
	ro, _ := s["readoption"].(map[string]any)
	refused, _ := ro["refused"].(string)
	if !strings.Contains(refused, "pidfd_open") || ro["processes"] != 0.0 {
		t.Errorf("readoption %v", s["readoption"])
	}
	if s["activeReleaseId"] != nil {
		t.Errorf("active release %v", s["activeReleaseId"])
	}
	orphans := map[int]bool{}
	for _, o := range s["orphans"].([]any) {
		orphans[int(o.(map[string]any)["pid"].(float64))] = true
	}
	for id, pid := range before {
		if !orphans[pid] || !alive(pid) {
			t.Errorf("%s (pid %d) is not a live orphan: %v", id, pid, s["orphans"])
		}
	}
	if after := pidsOf(s); len(after) != 0 {
		t.Errorf("the daemon runs processes of its own beside the orphans: %v", after)
	}
	if data, err := os.ReadFile(lock + ".log"); err == nil {
		t.Errorf("the singleton ran twice: %s", data)
	}
	if sawEvent(d, "process re-adopted", nil) || sawEvent(d, "release re-adopted", nil) {
		t.Errorf("re-adoption events without a re-adoption:\n%s", d.stdout.String())
	}
	d.stopDaemon()
	if r := d.cli("recover", "--force"); r.code != 0 || !strings.HasPrefix(r.stdout, fmt.Sprintf("Stopped %d orphaned processes:\n", len(before))) {
		t.Fatalf("recover --force: %+v", r)
	}
}
