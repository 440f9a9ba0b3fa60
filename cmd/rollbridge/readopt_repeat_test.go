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
	fds := fdTargets(t, d.cmd.Process.Pid)
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
		if now := fdTargets(t, d.cmd.Process.Pid); fmt.Sprint(now) != fmt.Sprint(fds) {
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
