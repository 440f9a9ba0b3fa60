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
)

// readoptConfig is an app with every kind of process, its state in dir.
func readoptConfig(state string) string {
	return `statePath: ` + strconv.Quote(state) + `, processes: [
    {id: "beacon", policy: "service", command: "exec FIXTURE -grandchildren 1"},
    {id: "cron", policy: "singleton", command: "exec FIXTURE"},
    {id: "worker", command: "exec FIXTURE", restartDelayMs: 10},
    ` + webProcess + `]`
}

// readoptDaemon starts a daemon of readoptConfig, deploys v1 and returns
// the pids status shows (pidsOf).
func readoptDaemon(t *testing.T) (*testDaemon, map[string]int) {
	t.Helper()
	d := startDaemon(t, readoptConfig(filepath.Join(t.TempDir(), "state.json")))
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	return d, pidsOf(d.status())
}

// pidsOf maps "<release or kind>/<id>" to the pid status shows.
func pidsOf(s map[string]any) map[string]int {
	out := map[string]int{}
	for _, r := range s["releases"].([]any) {
		rm := r.(map[string]any)
		for _, p := range rm["processes"].([]any) {
			pm := p.(map[string]any)
			if pid, ok := pm["pid"].(float64); ok {
				out[fmt.Sprintf("%v/%v", rm["releaseId"], pm["id"])] = int(pid)
			}
		}
	}
	for _, key := range []string{"services", "singletons"} {
		for _, e := range s[key].([]any) {
			em := e.(map[string]any)
			if pid, ok := em["process"].(map[string]any)["pid"].(float64); ok {
				out[fmt.Sprintf("%s/%v", key, em["id"])] = int(pid)
			}
		}
	}
	return out
}

// A SIGKILLed daemon's successor (without systemd's store) re-adopts the
// release, the service and the singleton: the same pids serve, status
// says what was re-adopted and that their output is no longer captured,
// supervision resumes (a crash is restarted, a deploy drains and stops
// the re-adopted release) and nothing is an orphan.
func TestReadoptAfterACrash(t *testing.T) {
	d, before := readoptDaemon(t)
	if len(before) != 4 {
		t.Fatalf("pids before the crash: %v", before)
	}
	d.crashDaemon()
	d.start()
	s := d.status()
	after := pidsOf(s)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("pids after the restart %v, before %v", after, before)
	}
	if s["activeReleaseId"] != "v1" || len(s["orphans"].([]any)) != 0 {
		t.Fatalf("active %v, orphans %v", s["activeReleaseId"], s["orphans"])
	}
	ro, _ := s["readoption"].(map[string]any)
	if ro == nil || ro["processes"] != 4.0 || fmt.Sprint(ro["releases"]) != "[v1]" || ro["refused"] != nil || ro["fdStore"] != false || len(ro["notReadopted"].([]any)) != 0 {
		t.Fatalf("readoption %v", s["readoption"])
	}
	web := processEntry(release(s, "v1")["processes"], "web")
	if web["adoptedAt"] == nil || web["outputCaptured"] != false || web["state"] != "running" {
		t.Fatalf("web after re-adoption: %v", web)
	}
	for _, want := range []string{"release re-adopted", "process re-adopted"} {
		if !sawEvent(d, want, map[string]string{"releaseId": "v1"}) {
			t.Fatalf("no %q event:\n%s", want, d.stdout.String())
		}
	}
	if code, body := d.get("/release"); code != 200 || !strings.Contains(body, "v1") {
		t.Fatalf("the re-adopted release answers %d %q", code, body)
	}

	// A re-adopted process that crashes is restarted by its policy; its
	// exit status is unknown (it is not the daemon's child).
	worker := before["v1/worker"]
	syscall.Kill(-worker, syscall.SIGKILL)
	waitUntil(t, "the worker to be restarted", 10*time.Second, func() bool {
		p := processEntry(release(d.status(), "v1")["processes"], "worker")
		pid, _ := p["pid"].(float64)
		return pid != 0 && int(pid) != worker && p["state"] == "running"
	})
	if !sawEvent(d, "process exited", map[string]string{"processId": "worker", "status": "unknown"}) {
		t.Fatalf("no exit event with an unknown status:\n%s", d.stdout.String())
	}
	d.recordPids(d.status())

	// The next deploy drains and stops the re-adopted release.
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy v2: %+v", r)
	}
	waitUntil(t, "v1 to stop", 20*time.Second, func() bool {
		return !alive(before["v1/web"]) && release(d.status(), "v1")["state"] == "stopped"
	})
	if code, body := d.get("/release"); code != 200 || !strings.Contains(body, "v2") {
		t.Fatalf("after the deploy: %d %q", code, body)
	}
	d.recordPids(d.status())
	d.shutdown()
	for id, pid := range before {
		if alive(pid) {
			t.Errorf("%s (pid %d) outlived the shutdown", id, pid)
		}
	}
}

// When the active release's web process is gone by the time the daemon
// restarts, nothing is re-adopted: the daemon reports every process as an
// orphan, as before re-adoption existed, says why, and serves no release.
func TestReadoptRefusedWhenTheWebProcessIsGone(t *testing.T) {
	d, before := readoptDaemon(t)
	d.crashDaemon()
	web := before["v1/web"]
	syscall.Kill(-web, syscall.SIGKILL)
	waitUntil(t, "the web process to die", 10*time.Second, func() bool { return !alive(web) })
	d.start()
	s := d.status()
	ro, _ := s["readoption"].(map[string]any)
	refused, _ := ro["refused"].(string)
	if refused != "the active release v1 failed its health check: its web process is no longer running" || ro["processes"] != 0.0 {
		t.Fatalf("readoption %v", s["readoption"])
	}
	if s["activeReleaseId"] != nil || len(s["releases"].([]any)) != 0 {
		t.Fatalf("a release is active after a refused re-adoption: %v %v", s["activeReleaseId"], s["releases"])
	}
	orphans := map[int]bool{}
	for _, o := range s["orphans"].([]any) {
		orphans[int(o.(map[string]any)["pid"].(float64))] = true
	}
	for id, pid := range before {
		if id != "v1/web" && !orphans[pid] {
			t.Errorf("%s (pid %d) is not an orphan: %v", id, pid, s["orphans"])
		}
	}
	if !sawEvent(d, "re-adoption failed", map[string]string{"releaseId": "v1", "error": "its web process is no longer running"}) {
		t.Fatalf("no re-adoption failed event:\n%s", d.stdout.String())
	}
	if code, _ := d.get("/release"); code != 503 {
		t.Fatalf("with no release re-adopted the proxy answered %d", code)
	}
	d.stopDaemon()
	if r := d.cli("recover", "--force"); r.code != 0 || !strings.HasPrefix(r.stdout, "Stopped 3 orphaned processes:\n") {
		t.Fatalf("recover --force: %+v", r)
	}
}

// A release that was draining when the daemon died comes back draining
// and finishes its drain: the connections it waited for died with the
// daemon, so its processes stop at once, and the active one keeps
// serving.
func TestReadoptResumesADrain(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	d := startDaemon(t, readoptConfig(state))
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	go holdRequest(d.url("/slow?ms=30000"))
	waitUntil(t, "the slow request to reach v1", 10*time.Second, func() bool {
		return release(d.status(), "v1")["connectionCount"] == float64(1)
	})
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy v2: %+v", r)
	}
	s := d.status()
	if release(s, "v1")["state"] != "draining" {
		t.Fatalf("v1 is %v", release(s, "v1")["state"])
	}
	v1 := pidsOf(s)
	d.crashDaemon()
	d.start()
	if !sawEvent(d, "release re-adopted", map[string]string{"releaseId": "v1", "state": "draining"}) {
		t.Fatalf("v1 was not re-adopted as draining:\n%s", d.stdout.String())
	}
	waitUntil(t, "v1's drain to finish", 20*time.Second, func() bool {
		return release(d.status(), "v1")["state"] == "stopped" && !alive(v1["v1/web"]) && !alive(v1["v1/worker"])
	})
	s = d.status()
	if s["activeReleaseId"] != "v2" || pidsOf(s)["v2/web"] != v1["v2/web"] {
		t.Fatalf("after the drain: active %v, pids %v (were %v)", s["activeReleaseId"], pidsOf(s), v1)
	}
	if code, body := d.get("/release"); code != 200 || !strings.Contains(body, "v2") {
		t.Fatalf("%d %q", code, body)
	}
}

// A bootstrap daemon restarted after a crash re-adopts the live release
// and skips its own; when it cannot re-adopt (the config changed in a way
// a deploy would refuse), it stops the previous daemon's processes before
// it starts the release it was given, so no worker or singleton ever
// runs twice.
func TestBootstrapAfterACrash(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	rel := filepath.Join(dir, "releases", "b1")
	os.MkdirAll(rel, 0o755)
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{},
		args: []string{"--release-path", rel, "--release-id", "b1", "--revision", "b1"}}
	config := func(extra string) string {
		return `statePath: ` + strconv.Quote(state) + `, processes: [{id: "cron", policy: "singleton", command: "exec FIXTURE"}, ` + extra + webProcess + `]`
	}
	d.writeConfig(config(""))
	d.start()
	t.Cleanup(d.cleanup)
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	before := pidsOf(d.status())

	d.crashDaemon()
	d.start()
	s := d.status()
	if s["activeReleaseId"] != "v2" || fmt.Sprint(pidsOf(s)) != fmt.Sprint(before) {
		t.Fatalf("after the first crash: active %v, pids %v, before %v", s["activeReleaseId"], pidsOf(s), before)
	}
	if !sawEvent(d, "bootstrap skipped", map[string]string{"activeReleaseId": "v2", "releaseId": "b1"}) {
		t.Fatalf("no bootstrap skipped event:\n%s", d.stdout.String())
	}

	d.crashDaemon()
	d.writeConfig(config(`{id: "mailer", command: "exec FIXTURE"}, `))
	d.start()
	s = d.status()
	if s["activeReleaseId"] != "b1" || len(s["orphans"].([]any)) != 0 {
		t.Fatalf("after the refused re-adoption: active %v, orphans %v", s["activeReleaseId"], s["orphans"])
	}
	for id, pid := range before {
		if alive(pid) {
			t.Errorf("%s (pid %d) of the previous daemon still runs beside the bootstrap release", id, pid)
		}
	}
	if !sawEvent(d, "orphans stopped before bootstrap", map[string]string{"releaseId": "b1"}) {
		t.Fatalf("no event for the stopped orphans:\n%s", d.stdout.String())
	}
	if code, body := d.get("/release"); code != 200 || body != "b1" {
		t.Fatalf("%d %q", code, body)
	}
}

// A daemon that died while a deploy replaced a singleton (the old copy
// stopped, the new one not started yet) left it recorded as stopped: the
// daemon that re-adopts the active release starts it, once.
func TestReadoptStartsASingletonCaughtBetweenItsCopies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	d := startDaemon(t, readoptConfig(path))
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	before := pidsOf(d.status())
	d.crashDaemon()
	cron := before["singletons/cron"]
	syscall.Kill(-cron, syscall.SIGKILL)
	waitUntil(t, "the singleton to die", 10*time.Second, func() bool { return !alive(cron) })
	doc := readStateFile(t, path)
	entry := doc["singletons"].([]any)[0].(map[string]any)["process"].(map[string]any)
	entry["state"] = "stopped"
	delete(entry, "pid")
	delete(entry, "pgid")
	delete(entry, "startTime")
	data, _ := json.Marshal(doc)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	waitUntil(t, "the singleton to run again", 10*time.Second, func() bool {
		p := service(d.status(), "singletons", "cron")
		pid, _ := p["pid"].(float64)
		return p["state"] == "running" && pid != 0 && int(pid) != cron
	})
	s := d.status()
	if len(s["singletons"].([]any)) != 1 || pidsOf(s)["v1/web"] != before["v1/web"] {
		t.Fatalf("after the re-adoption: %v", pidsOf(s))
	}
	d.recordPids(s)
}
