package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitQueued waits until the operations command of the daemon on sock
// lists n operations queued behind the running one.
func waitQueued(t *testing.T, sock string, n int) {
	t.Helper()
	waitUntil(t, strconv.Itoa(n)+" operations to queue", 10*time.Second, func() bool {
		var ops struct{ Queued []json.RawMessage }
		return json.Unmarshal([]byte(rawControl(t, sock, `{"command":"operations"}`)), &ops) == nil && len(ops.Queued) == n
	})
}

// processEntry finds a process entry by id in a release or list.
func processEntry(list any, id string) map[string]any {
	for _, p := range list.([]any) {
		if m := p.(map[string]any); m["id"] == id {
			return m
		}
	}
	return nil
}

func service(s map[string]any, key, id string) map[string]any {
	for _, e := range s[key].([]any) {
		if m := e.(map[string]any); m["id"] == id {
			return m["process"].(map[string]any)
		}
	}
	return nil
}

func TestPersistentService(t *testing.T) {
	d := startDaemon(t, `processes: [
    {id: "beacon", policy: "service", command: "echo beacon {{releaseId}}; exec FIXTURE -listen", port: {from: 21000, to: 21099}, restartDelayMs: 50},
    {id: "web", policy: "proxied", command: "exec FIXTURE -listen", env: {BEACON: "{{ports.beacon}}"}, port: {from: 21100, to: 21199}, health: {intervalMs: 20}}
  ]`)
	d.deploy("v1")
	s := d.status()
	beacon := service(s, "services", "beacon")
	pid, port := beacon["pid"], release(s, "v1")["ports"].(map[string]any)["beacon"]
	d.deploy("v2")
	d.deploy("v3")
	s = d.status()
	beacon = service(s, "services", "beacon")
	if beacon["pid"] != pid || release(s, "v3")["ports"].(map[string]any)["beacon"] != port {
		t.Fatalf("the service moved: pid %v→%v", pid, beacon["pid"])
	}
	if !strings.Contains(beacon["command"].(string), "beacon v3") {
		t.Fatalf("the restart template follows the newest release: %q", beacon["command"])
	}
	// Its output travels through a pipe that another goroutine reads:
	// the first copy's line is there once logs shows it.
	beaconLogs := func() []any { return service(d.status(), "services", "beacon")["logs"].([]any) }
	var logs []any
	waitUntil(t, "the first copy's line in logs", 10*time.Second, func() bool { logs = beaconLogs(); return len(logs) > 0 })
	before := len(logs)
	// A crash restarts it from the newest template, on the same port.
	syscall.Kill(-int(pid.(float64)), syscall.SIGKILL)
	waitUntil(t, "the service to restart", 10*time.Second, func() bool {
		p := service(d.status(), "services", "beacon")
		return p["restarts"] == 1.0 && p["state"] == "running"
	})
	// Running is said from the spawn on; the new copy's first line (its
	// echo, behind the spawn gate and two shells) comes a moment later.
	waitUntil(t, "the restarted copy's first line in logs", 10*time.Second, func() bool { logs = beaconLogs(); return len(logs) > before })
	if last := logs[len(logs)-1].(map[string]any)["line"]; last != "beacon v3" {
		t.Fatalf("restarted from %q", last)
	}
	if r := d.cli("events"); !strings.Contains(r.stdout, `process started {"processId":"beacon","releaseId":"v3"`) {
		t.Fatalf("events: %s", r.stdout)
	}
}

func TestServiceThatCannotStartFailsTheDeploy(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	d.deploy("v1")
	d.writeConfig(`processes: [{id: "jobs", policy: "service", command: "exec FIXTURE", cwd: "/nonexistent-rollbridge-dir"}, ` + webProcess + `]`)
	// Adding a process needs a daemon restart; start one with the new config.
	d.shutdown()
	d.start()
	r := d.deploy("v2")
	if r.code != 1 || r.stderr != "Error: cannot start jobs: working directory /nonexistent-rollbridge-dir does not exist\n" {
		t.Fatalf("%+v", r)
	}
	if s := d.status(); len(s["services"].([]any)) != 0 || s["activeReleaseId"] != nil {
		t.Fatalf("a service that failed to start is forgotten: %v", s["services"])
	}
}

func TestHandoffServiceOverlapsAndStopsLast(t *testing.T) {
	d := startDaemon(t, `processes: [
    {id: "jobs", policy: "service", deployStrategy: "handoff", command: "exec FIXTURE -listen", port: {from: 21200, to: 21299}},
    {id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: 21300, to: 21399}, health: {intervalMs: 20}}
  ]`)
	d.deploy("v1")
	ws, _ := d.openWebSocket()
	d.deploy("v2")
	s := d.status()
	v1, v2 := release(s, "v1"), release(s, "v2")
	p1, p2 := v1["ports"].(map[string]any)["jobs"], v2["ports"].(map[string]any)["jobs"]
	if p1 == p2 || processEntry(v1["processes"], "jobs")["state"] != "running" || processEntry(v2["processes"], "jobs")["state"] != "running" {
		t.Fatalf("both handoff instances run on their own ports: %v %v", p1, p2)
	}
	if ids := []string{processEntry(v2["processes"], "jobs")["id"].(string)}; ids[0] != "jobs" || len(s["services"].([]any)) != 0 {
		t.Fatal("handoff services are release processes, not daemon services")
	}
	ws.Close()
	waitUntil(t, "v1 to drain", 10*time.Second, func() bool { return release(d.status(), "v1")["state"] == "stopped" })
	var order []string
	for _, e := range d.events() {
		data := e["data"].(map[string]any)
		if e["message"] == "process exited" && data["releaseId"] == "v1" {
			order = append(order, data["processId"].(string))
		}
	}
	if !reflect.DeepEqual(order, []string{"web", "jobs"}) {
		t.Fatalf("the handoff service stops after the release's other processes: %v", order)
	}
}

func TestSingletonNeverOverlaps(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "cron.lock")
	d := startDaemon(t, `processes: [`+webProcess+`, {id: "cron", policy: "singleton", command: "exec FIXTURE -exclusive `+lock+`"}]`)
	for i := 1; i <= 5; i++ {
		id := "v" + itoa(i)
		if r := d.deploy(id); r.code != 0 {
			t.Fatalf("deploy %s: %+v", id, r)
		}
		cron := service(d.status(), "singletons", "cron")
		if cron["state"] != "running" || !strings.Contains(cron["cwd"].(string), id) {
			t.Fatalf("after %s the singleton is %v", id, cron)
		}
	}
	if data, err := os.ReadFile(lock + ".log"); err == nil {
		t.Fatalf("two singletons overlapped: %s", data)
	}
	// Each replacement stops the old copy before the new one starts.
	var seq []string
	for _, e := range d.events() {
		data := e["data"].(map[string]any)
		if data["processId"] == "cron" && (e["message"] == "process exited" || e["message"] == "process started") {
			seq = append(seq, e["message"].(string)[8:]+":"+data["releaseId"].(string))
		}
	}
	want := []string{"started:v1", "exited:v1", "started:v2", "exited:v2", "started:v3", "exited:v3", "started:v4", "exited:v4", "started:v5"}
	if !reflect.DeepEqual(seq, want) {
		t.Fatalf("singleton sequence %v", seq)
	}
}

func TestNonBlockingDrainStopsWorkersAtOnce(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`,
    {id: "worker", command: "exec FIXTURE", nonBlockingDrain: true},
    {id: "mailer", command: "exec FIXTURE"}]`)
	d.deploy("v1")
	ws, _ := d.openWebSocket()
	defer ws.Close()
	d.deploy("v2")
	waitUntil(t, "the nonBlockingDrain worker to stop", 10*time.Second, func() bool {
		return processEntry(release(d.status(), "v1")["processes"], "worker")["state"] == "stopped"
	})
	v1 := release(d.status(), "v1")
	if v1["state"] != "draining" || processEntry(v1["processes"], "mailer")["state"] != "running" || processEntry(v1["processes"], "web")["state"] != "running" {
		t.Fatalf("the rest of v1 keeps running while it drains: %v", v1)
	}
}

func TestRestartCommand(t *testing.T) {
	d := startDaemon(t, `processes: [
    {id: "beacon", policy: "service", command: "exec FIXTURE"},
    {id: "worker", command: "exec FIXTURE", replicas: 2},
    {id: "cron", policy: "singleton", command: "exec FIXTURE"},
    `+webProcess+`]`)
	d.deploy("v1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--process", "worker"}, `["worker#0","worker#1"]`},
		{[]string{"--process", "worker#1"}, `["worker#1"]`},
		{[]string{"--policy", "service"}, `["beacon"]`},
		{[]string{"--policy", "companion", "--process", "cron"}, ""},
		{nil, `["beacon","worker#0","worker#1","cron"]`},
	} {
		r := d.cli(append([]string{"restart"}, tc.args...)...)
		if tc.want == "" {
			if r.code != 1 || r.stderr != "Error: No managed process with id \"cron\" to restart.\n" {
				t.Fatalf("%v: %+v", tc.args, r)
			}
			continue
		}
		got := strings.Join(strings.Fields(strings.TrimSuffix(strings.SplitN(r.stdout, `"restarted": `, 2)[1], "}\n")), "")
		if r.code != 0 || got != tc.want {
			t.Fatalf("%v: %+v (%s)", tc.args, r, got)
		}
	}
	s := d.status()
	if p := processEntry(release(s, "v1")["processes"], "worker#1"); p["lastStartReason"] != "manual" || p["restarts"] != 0.0 {
		t.Fatalf("a manual restart: %v", p)
	}
	if r := d.cli("restart", "--process", "web"); r.code != 1 || r.stderr != "Error: The proxied process cannot be restarted in place; use \"rollbridge deploy\" for a zero-downtime replacement.\n" {
		t.Fatalf("proxied: %+v", r)
	}
	if r := d.cli("restart", "--process", "nope"); r.code != 1 || r.stderr != "Error: No managed process with id \"nope\" to restart.\n" {
		t.Fatalf("unknown: %+v", r)
	}
	if r := d.cli("restart", "--policy", "proxied"); r.code != 1 || r.stderr != "--policy must be one of: companion, singleton, service.\n" {
		t.Fatalf("bad policy: %+v", r)
	}
	// A failed process is revived by restart.
	worker := processEntry(release(s, "v1")["processes"], "worker#0")
	syscall.Kill(-int(worker["pid"].(float64)), syscall.SIGSTOP)
	if r := d.cli("restart", "--process", "worker#0"); r.code != 0 {
		t.Fatalf("restart of a stopped-by-signal worker: %+v", r)
	}
}

func TestRollback(t *testing.T) {
	d := startDaemon(t, `proxy: {port: 0, drainTimeoutMs: 200}, processes: [`+webProcess+`]`)
	if r := d.cli("rollback"); r.code != 1 || r.stderr != "Error: No previous release to roll back to.\n" {
		t.Fatalf("nothing to roll back to: %+v", r)
	}
	d.deploy("v1")
	d.deploy("v2")
	r := d.cli("rollback")
	if r.code != 0 || r.stdout != "{\n  \"status\": \"success\",\n  \"activeReleaseId\": \"v1\",\n  \"previousReleaseId\": \"v2\"\n}\n" {
		t.Fatalf("rollback: %+v", r)
	}
	if _, body := d.get("/release"); body != "v1" {
		t.Fatalf("after the rollback: %q", body)
	}
	s := d.status()
	if ids := len(s["releases"].([]any)); ids != 2 || s["releases"].([]any)[0].(map[string]any)["releaseId"] != "v1" {
		t.Fatalf("the rolled-back release keeps its place: %v", s["releases"])
	}
	if r := d.cli("rollback", "--release-id", "v2"); r.code != 0 || !strings.Contains(r.stdout, `"activeReleaseId": "v2"`) {
		t.Fatalf("rollback by id: %+v", r)
	}
	if r := d.cli("rollback", "--release-id", "v2"); r.code != 1 || r.stderr != "Error: Release \"v2\" is already active.\n" {
		t.Fatalf("already active: %+v", r)
	}
	if r := d.cli("rollback", "--release-id", "nope"); r.code != 1 || r.stderr != "Error: No retained release \"nope\" to roll back to.\n" {
		t.Fatalf("unknown: %+v", r)
	}
	msgs := strings.Join(messages(d.events()), "|")
	if !strings.Contains(msgs, "rollback starting|deploy starting") {
		t.Fatalf("events %s", msgs)
	}
}

func TestStopAndRetention(t *testing.T) {
	d := startDaemon(t, `proxy: {port: 0, drainTimeoutMs: 100}, releaseRetention: {keep: 2},
  processes: [{id: "beacon", policy: "service", command: "exec FIXTURE"}, `+webProcess+`]`)
	for i := 1; i <= 5; i++ {
		d.deploy("v" + itoa(i))
	}
	waitUntil(t, "the retired releases to drain", 10*time.Second, func() bool {
		s := d.status()
		return len(s["releases"].([]any)) == 3 && release(s, "v4")["state"] == "stopped"
	})
	var ids []string
	for _, r := range d.status()["releases"].([]any) {
		ids = append(ids, r.(map[string]any)["releaseId"].(string))
	}
	if !reflect.DeepEqual(ids, []string{"v3", "v4", "v5"}) {
		t.Fatalf("keep 2 stopped releases and the active one: %v", ids)
	}
	r := d.cli("stop")
	if r.code != 0 || !strings.Contains(r.stdout, `"activeReleaseId": null`) {
		t.Fatalf("stop: %+v", r)
	}
	if code, body := d.get("/"); code != 503 || body != "No active release\n" {
		t.Fatalf("after stop: %d %q", code, body)
	}
	s := d.status()
	if release(s, "v5")["state"] != "stopped" || service(s, "services", "beacon")["state"] != "running" {
		t.Fatalf("stop leaves services running: %v", s)
	}
	if r := d.cli("stop"); r.code != 1 || r.stderr != "Error: Release not found: active\n" {
		t.Fatalf("stop with nothing active: %+v", r)
	}
	if r := d.cli("stop", "--release-id", "v1"); r.code != 1 || r.stderr != "Error: Release not found: v1\n" {
		t.Fatalf("a pruned release: %+v", r)
	}
	// After stop, rollback re-activates the release that was just stopped.
	if r := d.cli("rollback"); r.code != 0 || !strings.Contains(r.stdout, `"activeReleaseId": "v5"`) || !strings.Contains(r.stdout, `"previousReleaseId": null`) {
		t.Fatalf("rollback after stop: %+v", r)
	}
}

func TestMemoryRestartAndStopSignal(t *testing.T) {
	dir := t.TempDir()
	hooks := filepath.Join(dir, "hooks.log")
	d := startDaemon(t, `processes: [`+webProcess+`,
    {id: "hog", command: "exec FIXTURE -alloc-mb 64", memory: {limitBytes: 33554432, checkIntervalMs: 100}},
    {id: "worker", command: "exec FIXTURE -on-signal SIGINT -signal-file `+hooks+` -exit-after 50ms", stopSignal: "SIGINT",
     lifecycle: {quietCommand: "echo quiet >> `+hooks+`", drainCommand: "echo drain >> `+hooks+`", drainTimeoutMs: 2000}}]`)
	d.deploy("v1")
	waitUntil(t, "a memory restart", 20*time.Second, func() bool {
		p := processEntry(release(d.status(), "v1")["processes"], "hog")
		return p["memoryRestarts"].(float64) >= 1 && p["lastMemoryRestartAt"] != nil
	})
	if r := d.cli("events"); !strings.Contains(r.stdout, `"id":"hog","pid"`) || !strings.Contains(r.stdout, `"reason":"memory"`) || !strings.Contains(r.stdout, "memory limit exceeded") {
		t.Fatalf("events: %s", r.stdout)
	}
	d.deploy("v2")
	waitUntil(t, "v1's worker to stop", 20*time.Second, func() bool {
		return processEntry(release(d.status(), "v1")["processes"], "worker")["state"] == "stopped"
	})
	data, _ := os.ReadFile(hooks)
	if string(data) != "quiet\ndrain\nSIGINT\n" {
		t.Fatalf("the stop sequence ran as %q", data)
	}
}

// Operations waiting behind a slow restart when a shutdown begins are
// refused with the shutdown error instead of running.
func TestOperationsQueuedBehindShutdownAreRefused(t *testing.T) {
	signals := filepath.Join(t.TempDir(), "signals")
	d := startDaemon(t, `proxy: {port: 0, drainTimeoutMs: 200}, processes: [
    {id: "worker", command: "exec FIXTURE -on-signal SIGTERM -exit-after 2s -signal-file `+signals+`-{{releaseId}}"},
    `+webProcess+`]`)
	d.deploy("v1")
	d.deploy("v2")
	waitUntil(t, "v1 to drain", 30*time.Second, func() bool {
		return strings.Contains(d.stdout.String(), `"message":"release drained"`)
	})
	signals += "-v2"
	restarted := make(chan result)
	go func() { restarted <- d.cli("restart", "--process", "worker") }()
	waitUntil(t, "the worker to receive SIGTERM", 10*time.Second, func() bool {
		data, _ := os.ReadFile(signals)
		return strings.Contains(string(data), "SIGTERM")
	})
	var conns []*bufio.Reader
	for _, req := range []string{`{"command":"rollback"}`, `{"command":"stop","releaseId":"v2"}`, `{"command":"restart"}`, `{"command":"deploy","releasePath":"` + d.dir + `"}`} {
		c, err := net.Dial("unix", d.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(c)
		// A status round trip first: the connection is being served.
		io.WriteString(c, `{"command":"status"}`+"\n")
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, `{"status":"success"`) {
			t.Fatalf("status: %q %v", line, err)
		}
		io.WriteString(c, req+"\n")
		conns = append(conns, r)
	}
	// A request line the daemon has not read yet is not queued: shutdown
	// closes its idle connection. Wait until all four wait for the lock.
	waitQueued(t, d.sock, 4)
	d.shutdown()
	if left := processesMentioning(signals); len(left) > 0 {
		t.Fatalf("processes outlived the daemon: %v", left)
	}
	for i, r := range conns {
		if line, err := r.ReadString('\n'); line != `{"error":"Rollbridge is shutting down","status":"error"}`+"\n" {
			t.Errorf("queued operation %d: %q %v", i, line, err)
		}
	}
	if r := <-restarted; r.code != 1 && r.code != 0 {
		t.Fatalf("the restart that was running: %+v", r)
	}
	log := d.stdout.String()
	if strings.Contains(log, `"message":"rollback starting"`) || strings.Contains(log, `"message":"release stopped"`) || strings.Count(log, `"message":"process restart requested"`) != 1 {
		t.Fatalf("a refused operation ran:\n%s", log)
	}
}

// Re-deploying the active release id replaces its status entry, but the
// superseded instance keeps its tunnel until it drained and then stops.
func TestRedeploySameIDTracksTheOldInstance(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	d.deploy("v1")
	oldPid := int(processEntry(release(d.status(), "v1")["processes"], "web")["pid"].(float64))
	ws, _ := d.openWebSocket()
	defer ws.Close()
	d.deploy("v1")
	s := d.status()
	var entries int
	for _, r := range s["releases"].([]any) {
		if r.(map[string]any)["releaseId"] == "v1" {
			entries++
		}
	}
	newPid := int(processEntry(release(s, "v1")["processes"], "web")["pid"].(float64))
	if entries != 1 || s["activeReleaseId"] != "v1" || newPid == oldPid || !alive(oldPid) {
		t.Fatalf("after the same-id deploy: %d entries, pids %d→%d (old alive %v): %v", entries, oldPid, newPid, alive(oldPid), s)
	}
	io.WriteString(ws, "still here\n")
	if line, _ := ws.r.ReadString('\n'); line != "still here\n" {
		t.Fatalf("the old tunnel: %q", line)
	}
	ws.Close()
	waitUntil(t, "the superseded instance to stop", 10*time.Second, func() bool { return !alive(oldPid) })
	if _, body := d.get("/release"); body != "v1" {
		t.Fatalf("served by %q", body)
	}
	// Superseded while still draining, then shut down: nothing is left.
	ws2, _ := d.openWebSocket()
	defer ws2.Close()
	d.deploy("v1")
	d.shutdown()
}

// processesMentioning lists live processes whose command line contains s:
// a leak check that does not depend on status having reported the pid.
func processesMentioning(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), s) {
			continue
		}
		if pid, err := strconv.Atoi(e.Name()); err == nil && alive(pid) {
			pids = append(pids, pid)
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	return pids
}

// A singleton whose template cannot render fails the deploy before the
// switch: the previous release and its singleton keep running.
func TestSingletonTemplateErrorKeepsThePreviousRelease(t *testing.T) {
	d := startDaemon(t, `processes: [{id: "cron", policy: "singleton", command: "exec FIXTURE"}, `+webProcess+`]`)
	d.deploy("v1")
	before := service(d.status(), "singletons", "cron")
	d.writeConfig(`processes: [{id: "cron", policy: "singleton", command: "exec FIXTURE {{env.ROLLBRIDGE_TEST_UNSET}}"}, ` + webProcess + `]`)
	r := d.cli("deploy", "--release-path", filepath.Join(d.dir, "releases", "v1"), "--release-id", "v2")
	if r.code != 1 || !strings.Contains(r.stderr, "Missing template value for {{env.ROLLBRIDGE_TEST_UNSET}}") {
		t.Fatalf("deploy: %+v", r)
	}
	s := d.status()
	after := service(s, "singletons", "cron")
	if s["activeReleaseId"] != "v1" || after["pid"] != before["pid"] || after["state"] != "running" {
		t.Fatalf("after the failed deploy: active %v, cron %v", s["activeReleaseId"], after)
	}
	if _, body := d.get("/release"); body != "v1" {
		t.Fatalf("served by %q", body)
	}
}

// Event data is printed as JSON.stringify writes it: no \u0026 for "&".
func TestEventsKeepShellCharacters(t *testing.T) {
	d := startDaemon(t, `processes: [{id: "worker", command: "true && exec FIXTURE > /dev/null"}, `+webProcess+`]`)
	d.deploy("v1")
	for _, args := range [][]string{{"events"}, {"events", "--json"}} {
		if r := d.cli(args...); r.code != 0 || !strings.Contains(r.stdout, "true && exec ") || !strings.Contains(r.stdout, "> /dev/null") {
			t.Fatalf("%v: %+v", args, r)
		}
	}
}

// A deploy queued behind another one whose client hung up (a CI job
// killed on a timeout) is not run later.
func TestQueuedDeployOfAGoneClientIsDropped(t *testing.T) {
	// The first deploy stays unhealthy until the second is queued behind it.
	d := startDaemon(t, `processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen -ready-file {{releasePath}}/ready", port: {from: 20000, to: 20999}, health: {path: "/ready", intervalMs: 20, timeoutMs: 30000}}]`)
	relA := filepath.Join(d.dir, "releases", "a")
	os.MkdirAll(relA, 0o755)
	first := make(chan result)
	go func() {
		first <- d.cli("deploy", "--release-path", relA, "--release-id", "a")
	}()
	waitUntil(t, "the first deploy to start", 10*time.Second, func() bool {
		return strings.Contains(d.stdout.String(), `"message":"deploy starting"`)
	})
	c, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, `{"command":"deploy","releaseId":"b","releasePath":"`+d.dir+`"}`+"\n")
	waitQueued(t, d.sock, 1)
	c.Close()
	if err := os.WriteFile(filepath.Join(relA, "ready"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := <-first; r.code != 0 {
		t.Fatalf("first deploy: %+v", r)
	}
	waitUntil(t, "the dropped deploy to be reported", 10*time.Second, func() bool {
		return strings.Contains(d.stdout.String(), "The deploy was not run: its client disconnected while it waited for the previous operation to finish.")
	})
	if strings.Contains(d.stdout.String(), `"releaseId":"b"`) {
		t.Fatalf("the abandoned deploy ran:\n%s", d.stdout.String())
	}
	if s := d.status(); s["activeReleaseId"] != "a" {
		t.Fatalf("active %v", s["activeReleaseId"])
	}
}
