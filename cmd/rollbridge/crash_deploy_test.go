package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/runtime"
)

// testMark returns an environment entry unique to this test. Daemons
// started with it pass it on to every process they start (their
// environment is inherited, also by hooks), so the test finds all of them
// in /proc without asking rollbridge. Whatever carries it is killed when
// the test ends.
func testMark(t *testing.T) string {
	b := make([]byte, 8)
	rand.Read(b)
	mark := "RB_TEST_MARK=" + hex.EncodeToString(b)
	t.Cleanup(func() {
		for _, pid := range markedProcesses(mark) {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return mark
}

// markedProcesses lists the live processes whose environment holds mark.
func markedProcesses(mark string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(append(env, 0), []byte(mark+"\x00")) {
			continue
		}
		if alive(pid) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// gated reports whether pid is still a child that waits for the daemon
// to record it (it exits by itself once its daemon is gone).
func gated(pid int) bool {
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return bytes.Contains(cmdline, []byte("rollbridge_gate"))
}

// gatedProcesses lists the live children that still wait for their
// daemon to record them.
func gatedProcesses() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && gated(pid) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sawEvent reports whether the daemon logged message with the given
// data values (all of them strings).
func sawEvent(d *testDaemon, message string, data map[string]string) bool {
	for _, line := range strings.Split(d.stdout.String(), "\n") {
		var e struct {
			Message string
			Data    map[string]any
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Message != message {
			continue
		}
		match := true
		for k, v := range data {
			if e.Data[k] != v {
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}

// holdRequest keeps a request open through the proxy; its outcome does
// not matter (the daemon dies meanwhile).
func holdRequest(url string) {
	if resp, err := http.Get(url); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// crashConfig has every kind of process, hooks that take their time, and
// a web process that passes its health check only once
// <release>/ready exists.
const crashConfig = `proxy: {port: 0, drainTimeoutMs: 30000, forceStopTimeoutMs: 2000}, processes: [
    {id: "beacon", policy: "service", command: "exec FIXTURE"},
    {id: "worker", command: "exec FIXTURE", nonBlockingDrain: true, lifecycle: {drainCommand: "touch hook-drain; exec sleep 60", drainTimeoutMs: 1500}},
    {id: "cron", policy: "singleton", command: "exec FIXTURE", gracefulStopMs: 1000, lifecycle: {quietCommand: "touch hook-quiet; exec sleep 60"}},
    {id: "web", policy: "proxied", command: "exec FIXTURE -listen -ready-file {{releasePath}}/ready", port: {from: 20000, to: 20999}, health: {path: "/ready", intervalMs: 20, timeoutMs: 30000}}
  ]`

// crashDaemon starts a daemon for the crash tests, carrying mark.
func startCrashDaemon(t *testing.T, mark string) *testDaemon {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "state"), 0o755)
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{}, env: []string{mark}}
	d.writeConfig(`statePath: ` + strconv.Quote(filepath.Join(dir, "state", "rollbridge.json")) + `, ` + crashConfig)
	d.start()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// releaseDir prepares the directory of release id; ready lets its web
// process pass the health check.
func (d *testDaemon) releaseDir(id string, ready bool) string {
	path := d.releasePath(id)
	if ready {
		os.WriteFile(filepath.Join(path, "ready"), nil, 0o644)
	}
	return path
}

// deployInBackground runs a deploy that is not expected to return
// before the daemon dies.
func (d *testDaemon) deployInBackground(id string) {
	path := d.releaseDir(id, false)
	cmd := exec.Command(binary, "deploy", "-c", d.config, "--release-path", path, "--release-id", id)
	cmd.Dir = d.dir
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	go cmd.Wait()
}

// assertNothingUntracked is the check after a crash: a new daemon either
// re-adopted every live process of the test (by its process group) or
// lists it as an orphan; once it is shut down (which stops what it
// re-adopted), recover --force leaves none of them running. Children
// that still wait behind their gate must exit by themselves.
func assertNothingUntracked(t *testing.T, d *testDaemon, mark string) {
	t.Helper()
	d.start()
	waitUntil(t, "gated children of the dead daemon to exit", 5*time.Second, func() bool {
		for _, pid := range markedProcesses(mark) {
			if gated(pid) {
				return false
			}
		}
		return true
	})
	s := d.status()
	orphans := map[int]bool{}
	for _, o := range s["orphans"].([]any) {
		orphans[int(o.(map[string]any)["pid"].(float64))] = true
	}
	owned := map[int]bool{}
	for _, pid := range pidsOf(s) {
		owned[pid] = true
	}
	d.recordPids(s)
	marked := markedProcesses(mark)
	// The new daemon's own hooks (a resumed drain runs its process's
	// hooks again) are on record in its state file before they run, so
	// every one alive in marked is in a file read after it.
	for _, pid := range pidsInState(t, filepath.Join(d.dir, "state", "rollbridge.json")) {
		owned[pid] = true
	}
	live := 0
	for _, pid := range marked {
		if pid == d.cmd.Process.Pid {
			continue
		}
		live++
		if g := processGroupOf(pid); g != 0 && !orphans[g] && !owned[g] {
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			t.Errorf("process %d (group %d, %q) is neither re-adopted %v nor among the orphans %v", pid, g, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), owned, s["orphans"])
		}
	}
	if live == 0 {
		t.Fatal("no process of the test survived the crash: the case tests nothing")
	}
	d.stopDaemon()
	if r := d.cli("recover", "--force"); r.code != 0 || (!strings.HasPrefix(r.stdout, "Stopped ") && len(orphans) > 0) {
		t.Fatalf("recover --force: %+v", r)
	}
	if left := markedProcesses(mark); len(left) > 0 {
		t.Fatalf("recover --force left processes of the test running: %v", left)
	}
	t.Logf("%d processes survived the crash, all re-adopted (%d groups) or recorded as orphans (%d) and stopped", live, len(owned), len(orphans))
}

// A daemon SIGKILLed at any step of a deploy leaves nothing that nobody
// knows about: the next daemon re-adopts every process of the test or
// reports it as an orphan, and its shutdown and recover --force stop them
// all.
func TestCrashAtAnyDeployStepLeavesNothingUntracked(t *testing.T) {
	switched := func(id string) map[string]string { return map[string]string{"releaseId": id} }
	started := func(process, id string) map[string]string {
		return map[string]string{"processId": process, "releaseId": id}
	}
	type step struct {
		name string
		// crashAt runs the deploy of v2 (after v1 is active) until the
		// moment of the crash.
		crashAt func(t *testing.T, d *testDaemon)
	}
	steps := []step{
		{"companions started", func(t *testing.T, d *testDaemon) {
			d.deployInBackground("v2")
			waitUntil(t, "the companion of v2 to start", 30*time.Second, func() bool {
				return sawEvent(d, "process started", started("worker", "v2"))
			})
		}},
		{"web started", func(t *testing.T, d *testDaemon) {
			d.deployInBackground("v2")
			waitUntil(t, "the web process of v2 to start", 30*time.Second, func() bool {
				return sawEvent(d, "process started", started("web", "v2"))
			})
		}},
		{"during the health check", func(t *testing.T, d *testDaemon) {
			d.deployInBackground("v2")
			waitUntil(t, "a failed health probe of v2", 30*time.Second, func() bool {
				_, err := os.Stat(filepath.Join(d.dir, "releases", "v2", "ready.probed"))
				return err == nil
			})
		}},
		{"right after the switch", func(t *testing.T, d *testDaemon) {
			os.WriteFile(filepath.Join(d.releaseDir("v2", false), "ready"), nil, 0o644)
			d.deployInBackground("v2")
			waitUntil(t, "the switch to v2", 30*time.Second, func() bool {
				return sawEvent(d, "traffic switched", switched("v2"))
			})
		}},
		{"while the old singleton's quiet hook runs", func(t *testing.T, d *testDaemon) {
			os.WriteFile(filepath.Join(d.releaseDir("v2", false), "ready"), nil, 0o644)
			d.deployInBackground("v2")
			waitUntil(t, "the quiet hook of v1's singleton", 30*time.Second, func() bool {
				_, err := os.Stat(filepath.Join(d.dir, "releases", "v1", "hook-quiet"))
				return err == nil
			})
		}},
		{"during the drain", func(t *testing.T, d *testDaemon) {
			// A slow request holds v1's drain; its worker's drain hook runs.
			go holdRequest(d.url("/slow?ms=20000"))
			waitUntil(t, "the slow request to reach v1", 30*time.Second, func() bool {
				return release(d.status(), "v1")["connectionCount"] == float64(1)
			})
			os.WriteFile(filepath.Join(d.releaseDir("v2", false), "ready"), nil, 0o644)
			d.deployInBackground("v2")
			waitUntil(t, "the drain hook of v1's worker", 30*time.Second, func() bool {
				_, err := os.Stat(filepath.Join(d.dir, "releases", "v1", "hook-drain"))
				return err == nil && sawEvent(d, "process started", started("cron", "v2"))
			})
		}},
		{"draining a superseded instance of the same id", func(t *testing.T, d *testDaemon) {
			go holdRequest(d.url("/slow?ms=20000"))
			waitUntil(t, "the slow request to reach v1", 30*time.Second, func() bool {
				return release(d.status(), "v1")["connectionCount"] == float64(1)
			})
			d.deployInBackground("v1")
			waitUntil(t, "the superseded v1 to drain", 30*time.Second, func() bool {
				_, err := os.Stat(filepath.Join(d.dir, "releases", "v1", "hook-drain"))
				return err == nil && sawEvent(d, "traffic switched", map[string]string{"previousReleaseId": "v1", "releaseId": "v1"})
			})
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			mark := testMark(t)
			d := startCrashDaemon(t, mark)
			d.releaseDir("v1", true)
			if r := d.deploy("v1"); r.code != 0 {
				t.Fatalf("deploy v1: %+v", r)
			}
			st.crashAt(t, d)
			d.crashDaemon()
			assertNothingUntracked(t, d, mark)
		})
	}
}

// A takeover crashes at its two delicate moments: the candidate dies
// after it started its processes (the owner still owns the state file),
// and the new owner dies right after the handoff.
func TestCrashDuringATakeoverLeavesNothingUntracked(t *testing.T) {
	t.Run("candidate killed after it started processes", func(t *testing.T) {
		mark := testMark(t)
		owner := startCrashDaemon(t, mark)
		owner.releaseDir("v1", true)
		if r := owner.deploy("v1"); r.code != 0 {
			t.Fatalf("deploy v1: %+v", r)
		}
		cand := owner.candidate("v2") // its web process waits for v2/ready
		cand.env = []string{mark}
		cand.ready = func() bool {
			return sawEvent(cand, "process started", map[string]string{"processId": "web", "releaseId": "v2"})
		}
		cand.start()
		cand.crashDaemon()
		// The owner never knew the candidate's processes; its clean
		// shutdown stops its own, and the next daemon finds the rest.
		owner.stopDaemon()
		assertNothingUntracked(t, owner, mark)
	})
	t.Run("new owner killed right after the handoff", func(t *testing.T) {
		mark := testMark(t)
		owner := startCrashDaemon(t, mark)
		owner.releaseDir("v1", true)
		if r := owner.deploy("v1"); r.code != 0 {
			t.Fatalf("deploy v1: %+v", r)
		}
		cand := owner.candidate("v2")
		os.WriteFile(filepath.Join(owner.dir, "releases", "v2", "ready"), nil, 0o644)
		cand.env = []string{mark}
		cand.start() // returns once it listens on the control socket
		owner.handedOver = true
		cand.crashDaemon()
		// The retired owner stops its own processes and exits by itself.
		select {
		case <-owner.exited:
		case <-time.After(30 * time.Second):
			t.Fatal("the retired owner did not exit")
		}
		assertNothingUntracked(t, owner, mark)
	})
}

// processGroupOf is pid's process group, 0 when it is gone.
func processGroupOf(pid int) int {
	pgid, _, _ := runtime.Identity(pid)
	return pgid
}

// pidsInState lists the pids of every entry (processes and running hooks)
// of the releases, services and singletons in a state file.
func pidsInState(t *testing.T, path string) []int {
	t.Helper()
	s := readStateFile(t, path)
	var out []int
	add := func(v any) {
		if m, ok := v.(map[string]any); ok {
			if pid, ok := m["pid"].(float64); ok {
				out = append(out, int(pid))
			}
		}
	}
	for _, r := range s["releases"].([]any) {
		for _, p := range r.(map[string]any)["processes"].([]any) {
			add(p)
		}
	}
	for _, key := range []string{"services", "singletons"} {
		for _, e := range s[key].([]any) {
			add(e.(map[string]any)["process"])
		}
	}
	return out
}
