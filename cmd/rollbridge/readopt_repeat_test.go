package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/sdnotify/sdtest"
)

// startUnder starts d's daemon the way systemd does under m: with the
// notify socket and what m's store holds passed as LISTEN_FDS.
func (d *testDaemon) startUnder(m *sdtest.Manager) {
	d.t.Helper()
	d.stdout, d.stderr, d.exited = &syncBuffer{}, &syncBuffer{}, make(chan struct{})
	cmd, err := m.Start(binary, append([]string{"daemon", "-c", d.config}, d.args...), nil, d.stdout, d.stderr)
	if err != nil {
		d.t.Fatal(err)
	}
	d.cmd = cmd
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		d.t.Fatalf("no READY=1: %v\n%s\n%s", err, d.stdout.String(), d.stderr.String())
	}
	d.port = int(d.status()["proxy"].(map[string]any)["port"].(float64))
}

// fdTargets lists the kinds of pid's descriptors (socket, pipe, pidfd…),
// sorted, without /dev/null.
func fdTargets(t *testing.T, pid int) []string {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if target == "/dev/null" {
			continue // the stdin of a spawn in progress
		}
		kind, _, _ := strings.Cut(target, ":")
		if strings.HasPrefix(target, "anon_inode:") {
			kind = target
		}
		out = append(out, kind)
	}
	sort.Strings(out)
	return out
}

// Three crashes in a row under the harness that plays systemd: each new
// daemon re-adopts the same processes with their output, the store keeps
// exactly the same entries (nothing removed that the next start needs,
// nothing added twice), and the daemon holds no more descriptors after
// any restart than the daemon that deployed: every descriptor systemd
// passes back is used or closed.
func TestReadoptionThroughTheStoreThreeTimes(t *testing.T) {
	m, err := sdtest.NewManager(t.TempDir(), 256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	state := filepath.Join(t.TempDir(), "state.json")
	d := newTestDaemon(t, readoptConfig(state))
	d.startUnder(m)
	t.Cleanup(d.cleanup)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	before := pidsOf(d.status())
	sorted := func(names []string) string {
		names = append([]string(nil), names...)
		sort.Strings(names)
		return fmt.Sprint(names)
	}
	names := sorted(m.Names())
	if strings.Count(names, "out-") != len(before) || strings.Count(names, "err-") != len(before) {
		t.Fatalf("stored after the deploy: %s (processes %v)", names, before)
	}
	fds := settledFDTargets(t, d.cmd.Process.Pid)
	for i := 1; i <= 3; i++ {
		d.crashDaemon()
		d.startUnder(m)
		s := d.status()
		if fmt.Sprint(pidsOf(s)) != fmt.Sprint(before) {
			t.Fatalf("restart %d: pids %v, before %v", i, pidsOf(s), before)
		}
		ro, _ := s["readoption"].(map[string]any)
		if ro == nil || ro["fdStore"] != true || ro["processes"] != float64(len(before)) || ro["refused"] != nil {
			t.Fatalf("restart %d: readoption %v", i, s["readoption"])
		}
		if web := processEntry(release(s, "v1")["processes"], "web"); web["outputCaptured"] != nil {
			t.Fatalf("restart %d: web %v", i, web)
		}
		if got := sorted(m.Names()); got != names {
			t.Fatalf("restart %d: stored %s, after the deploy %s", i, got, names)
		}
		if now := settledFDTargets(t, d.cmd.Process.Pid); fmt.Sprint(now) != fmt.Sprint(fds) {
			t.Fatalf("restart %d: the daemon holds %v, the one that deployed %v", i, now, fds)
		}
	}
}

// A takeover after a re-adoption retires the re-adopted processes like
// any others: traffic moves to the candidate without a failed request,
// every process of the old daemon stops, and the singleton never runs
// twice.
func TestTakeoverAfterReadoption(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	lock := filepath.Join(dir, "cron.lock")
	owner := startDaemon(t, `statePath: `+strconv.Quote(state)+`, processes: [
    {id: "beacon", policy: "service", command: "exec FIXTURE"},
    {id: "cron", policy: "singleton", command: "exec FIXTURE -exclusive `+lock+`"},
    {id: "worker", command: "exec FIXTURE"}, `+webProcess+`]`)
	owner.deploy("v1")
	before := pidsOf(owner.status())
	owner.crashDaemon()
	owner.start()
	if fmt.Sprint(pidsOf(owner.status())) != fmt.Sprint(before) {
		t.Fatalf("not re-adopted: %v vs %v", pidsOf(owner.status()), before)
	}
	tr := startTraffic("http://127.0.0.1:"+strconv.Itoa(owner.port), mixedClients(4, "/release")...)
	tr.waitFor(t, "traffic to flow", 50)
	cand := owner.candidate("v2")
	cand.start()
	t.Cleanup(cand.cleanup)
	owner.handedOver = true
	cand.port = owner.port
	waitUntil(t, "requests to reach v2", 10*time.Second, func() bool {
		_, body := cand.get("/release")
		return body == "v2"
	})
	select {
	case <-owner.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the owner did not exit\n%s", owner.stdout.String())
	}
	failures := tr.stop()
	if len(failures) != 0 {
		t.Errorf("%d requests failed; first %v", len(failures), failures[0].err)
	}
	for id, pid := range before {
		if alive(pid) {
			t.Errorf("%s (pid %d) survived the retirement", id, pid)
		}
	}
	if data, err := os.ReadFile(lock + ".log"); err == nil {
		t.Errorf("singleton overlap: %s", data)
	}
	if s := cand.status(); len(s["orphans"].([]any)) != 0 || len(pidsOf(s)) != 4 {
		t.Errorf("candidate: %v, orphans %v", pidsOf(s), s["orphans"])
	}
	cand.shutdown()
}

// A deliberate shutdown takes the daemon's listeners out of systemd's
// store before it closes them: otherwise systemd's copy keeps the proxy
// port listening while the unit stops (and, with
// FileDescriptorStorePreserve= or Restart=always, after it), and clients
// wait in the backlog for a daemon that is going away instead of being
// refused.
func TestShutdownTakesTheListenersOutOfTheStore(t *testing.T) {
	m, err := sdtest.NewManager(t.TempDir(), 256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	d := newTestDaemon(t, `processes: [`+webProcess+`]`)
	d.startUnder(m)
	t.Cleanup(d.cleanup)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	if names := fmt.Sprint(m.Names()); !strings.Contains(names, "proxy") || !strings.Contains(names, "control") {
		t.Fatalf("stored while running: %s", names)
	}
	d.shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// (Output pipes may stay until their capture ended; their writers are
	// gone, so systemd drops them by itself, POLLHUP.)
	for _, name := range m.Names() {
		if name == "proxy" || name == "control" || name == "metrics" {
			t.Fatalf("still stored after the shutdown: %v", m.Names())
		}
	}
}

// A bootstrap that fails keeps its listeners in the store: its exit is a
// failure that systemd retries, and the retry gets the same proxy socket,
// so clients wait in its backlog instead of being refused in between.
func TestAFailedBootstrapKeepsTheListenersStored(t *testing.T) {
	m, err := sdtest.NewManager(t.TempDir(), 256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	dir := t.TempDir()
	rel := filepath.Join(dir, "releases", "b1")
	os.MkdirAll(rel, 0o755)
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{},
		args: []string{"--release-path", rel, "--release-id", "b1", "--revision", "b1"}}
	// The web process never becomes ready: the bootstrap deploy fails.
	d.writeConfig(`processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen -ready-file {{releasePath}}/ready",
     port: {from: 20000, to: 20999}, health: {path: "/ready", intervalMs: 20, timeoutMs: 300}}]`)
	out := &syncBuffer{}
	cmd, err := m.Start(binary, append([]string{"daemon", "-c", d.config}, d.args...), nil, out, out)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err == nil {
			t.Fatalf("the bootstrap did not fail:\n%s", out.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the daemon did not exit:\n%s", out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if names := fmt.Sprint(m.Names()); !strings.Contains(names, "proxy") {
		t.Fatalf("stored after the failed bootstrap: %s\n%s", names, out.String())
	}
}

// settledFDTargets is fdTargets once it stopped changing: a control
// connection of a command that just ended may still be closing, and a
// leaked descriptor stays, while such a connection goes within moments.
func settledFDTargets(t *testing.T, pid int) []string {
	t.Helper()
	last, same := fdTargets(t, pid), 0
	for deadline := time.Now().Add(5 * time.Second); same < 3 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		now := fdTargets(t, pid)
		if fmt.Sprint(now) == fmt.Sprint(last) {
			same++
		} else {
			last, same = now, 0
		}
	}
	return last
}
