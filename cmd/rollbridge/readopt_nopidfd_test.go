package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	rbruntime "github.com/rollbridge/rollbridge/runtime"
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

// A recorded process that still runs but cannot be adopted (here: the
// state file names a member of the worker's process group that does not
// lead it, so Adopt refuses it) stays an orphan with the adoption's error
// as its reason. The daemon must not start the worker anew: its group,
// with the real worker, still runs.
func TestAProcessThatCannotBeAdoptedIsNotStartedTwice(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	pids := filepath.Join(dir, "worker.pids")
	d := startDaemon(t, `statePath: `+strconv.Quote(state)+`, processes: [
    {id: "worker", command: "exec FIXTURE -grandchildren 1 -pid-file `+pids+`"},
    `+webProcess+`]`)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	before := pidsOf(d.status())
	var lines []string
	waitUntil(t, "the worker's pid file", 10*time.Second, func() bool {
		data, _ := os.ReadFile(pids)
		lines = strings.Fields(string(data))
		return len(lines) == 2
	})
	grandchild, _ := strconv.Atoi(lines[1])
	pgid, ticks, ok := rbruntime.Identity(grandchild)
	if !ok || pgid != before["v1/worker"] {
		t.Fatalf("grandchild %d: group %d, worker %d", grandchild, pgid, before["v1/worker"])
	}
	d.crashDaemon()
	// The record of the worker now names the grandchild: its group and
	// start time confirm it, but it does not lead the group.
	raw, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, p := range doc["releases"].([]any)[0].(map[string]any)["processes"].([]any) {
		if pm := p.(map[string]any); pm["id"] == "worker" {
			pm["pid"], pm["startTime"] = grandchild, ticks
		}
	}
	if raw, err = json.MarshalIndent(doc, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	s := d.status()
	if worker := processEntry(release(s, "v1")["processes"], "worker"); worker["pid"] != nil {
		t.Errorf("a second worker was started beside the group of the first: %v", worker)
	}
	missed := s["readoption"].(map[string]any)["notReadopted"].([]any)
	if len(missed) != 1 || !strings.Contains(fmt.Sprint(missed[0].(map[string]any)["reason"]), "not leading its own") {
		t.Errorf("notReadopted %v", missed)
	}
	d.stopDaemon()
	syscall.Kill(-before["v1/worker"], syscall.SIGKILL)
	waitUntil(t, "the worker's group to go", 10*time.Second, func() bool { return !alive(before["v1/worker"]) && !alive(grandchild) })
}
