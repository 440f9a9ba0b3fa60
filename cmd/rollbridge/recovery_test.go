package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine"
)

// crashDaemon SIGKILLs the daemon, leaving its processes and socket file.
func (d *testDaemon) crashDaemon() {
	d.t.Helper()
	d.cmd.Process.Kill()
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.t.Fatal("the daemon did not die")
	}
}

// stopDaemon asks the daemon to shut down and waits, without requiring
// that nothing outlives it (inherited orphans do, by design).
func (d *testDaemon) stopDaemon() {
	d.t.Helper()
	if r := d.cli("shutdown"); r.code != 0 {
		d.t.Fatalf("shutdown: %+v", r)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.t.Fatal("the daemon did not exit")
	}
}

func readStateFile(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("state file %q: %v", data, err)
	}
	return m
}

// A SIGKILLed daemon leaves its processes running. When the next daemon
// cannot re-adopt them (here: its config changed in a way a deploy would
// refuse), it, doctor and recover report them as orphans, and recover
// --force stops them.
func TestOrphansAfterADaemonCrash(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state", "rollbridge.json")
	os.Mkdir(filepath.Dir(state), 0o755)
	config := func(workers int) string {
		return `statePath: ` + strconv.Quote(state) + `, processes: [
    {id: "beacon", policy: "service", command: "exec FIXTURE -grandchildren 1", env: {API_SECRET: "hunter2"}},
    {id: "worker", command: "exec FIXTURE", replicas: ` + strconv.Itoa(workers) + `, env: {API_SECRET: "hunter2"}},
    ` + webProcess + `]`
	}
	d := startDaemon(t, config(1))
	d.deploy("v1")
	waitUntil(t, "the state file to record v1", 10*time.Second, func() bool {
		data, _ := os.ReadFile(state)
		return strings.Contains(string(data), `"activeReleaseId": "v1"`) && strings.Count(string(data), `"pgid": `) == 3
	})
	data, _ := os.ReadFile(state)
	for _, secret := range []string{"hunter2", fixture, `"command"`, `"cwd"`, `"logs"`, `"children"`, `"env"`} {
		if strings.Contains(string(data), secret) {
			t.Fatalf("the state file contains %s:\n%s", secret, data)
		}
	}
	s := d.status()
	pids := map[string]int{}
	for _, id := range []string{"web", "worker"} {
		pids[id] = int(processEntry(release(s, "v1")["processes"], id)["pid"].(float64))
	}
	pids["beacon"] = int(service(s, "services", "beacon")["pid"].(float64))

	d.crashDaemon()
	d.writeConfig(config(2))
	d.start()
	s = d.status()
	refused, _ := s["readoption"].(map[string]any)["refused"].(string)
	if refused != `the config changed settings that a running daemon cannot change (processes): processes[1] "worker": replicas 1 → 2` {
		t.Fatalf("readoption %v", s["readoption"])
	}
	if !sawEvent(d, "re-adoption refused", map[string]string{}) {
		t.Fatalf("no re-adoption refused event:\n%s", d.stdout.String())
	}
	var orphans []string
	for _, o := range s["orphans"].([]any) {
		m := o.(map[string]any)
		if len(m) != 3 {
			t.Fatalf("orphan entry %v", m)
		}
		orphans = append(orphans, fmt.Sprintf("%v/%v/%v", m["id"], m["pid"], m["releaseId"]))
	}
	want := []string{fmt.Sprintf("worker/%d/v1", pids["worker"]), fmt.Sprintf("web/%d/v1", pids["web"]), fmt.Sprintf("beacon/%d/<nil>", pids["beacon"])}
	if strings.Join(orphans, " ") != strings.Join(want, " ") {
		t.Fatalf("orphans %v, want %v", orphans, want)
	}
	msgs := strings.Join(messages(d.events()), "|")
	if strings.Count(msgs, "orphaned managed process detected") != 3 || !strings.Contains(msgs, "orphaned processes from a previous daemon") {
		t.Fatalf("events: %s", msgs)
	}
	if r := d.cli("doctor"); r.code != 0 || !strings.Contains(r.stdout, "✓ orphaned processes: a daemon is running; its managed processes are not orphans\n") {
		t.Fatalf("doctor next to the daemon: %+v", r)
	}
	if r := d.cli("recover"); r.code != 1 || r.stderr != "A daemon (or another process) is using "+d.sock+"; stop it before recovering — recover is for cleaning up after a crash.\n" {
		t.Fatalf("recover next to a daemon: %+v", r)
	}
	// A clean shutdown keeps the inherited orphans in the file.
	d.stopDaemon()
	kept := readStateFile(t, state)
	if len(kept["orphans"].([]any)) != 3 || len(kept["releases"].([]any)) != 0 || kept["activeReleaseId"] != nil {
		t.Fatalf("state after a clean shutdown: %v", kept)
	}
	if o := kept["orphans"].([]any)[0].(map[string]any); o["pgid"] != o["pid"] || o["startTime"] == nil {
		t.Fatalf("orphan entry keeps pgid and startTime: %v", o)
	}

	r := d.cli("doctor")
	wantLine := fmt.Sprintf("✗ orphaned processes: 3 possible orphaned processes still running: worker (pid %d), web (pid %d), beacon (pid %d) — verify and stop any leftovers\n", pids["worker"], pids["web"], pids["beacon"])
	if r.code != 1 || !strings.Contains(r.stdout, wantLine) || r.stderr != "\n1 check failed.\n" {
		t.Fatalf("doctor: %+v", r)
	}
	list := fmt.Sprintf("  worker (pid %d, release v1)\n  web (pid %d, release v1)\n  beacon (pid %d)\n", pids["worker"], pids["web"], pids["beacon"])
	if r := d.cli("recover"); r.code != 0 || r.stdout != "Found 3 orphaned processes (run with --force to stop):\n"+list+"Review the list first — a recycled pid could be an unrelated process.\n" {
		t.Fatalf("recover: %+v", r)
	}
	for id, pid := range pids {
		if !alive(pid) {
			t.Fatalf("the dry run stopped %s", id)
		}
	}
	if r := d.cli("recover", "--force"); r.code != 0 || r.stdout != "Stopped 3 orphaned processes:\n"+list {
		t.Fatalf("recover --force: %+v", r)
	}
	for id, pid := range pids {
		if alive(pid) {
			t.Fatalf("%s (pid %d) survived recover --force", id, pid)
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the state file is still there: %v", err)
	}
	if r := d.cli("recover", "--force"); r.code != 0 || r.stdout != "No orphaned processes found; cleared the state file.\n" {
		t.Fatalf("recover --force again: %+v", r)
	}
	if r := d.cli("recover"); r.code != 0 || r.stdout != "No orphaned processes found.\n" {
		t.Fatalf("recover again: %+v", r)
	}
}

// A state file the daemon cannot use is reported and otherwise ignored;
// one it cannot write is reported and the daemon keeps serving.
func TestUnusableStateFiles(t *testing.T) {
	dir := t.TempDir()
	nodeState := `{"activeReleaseId":"c2","orphans":[],"releases":[{"releaseId":"c2","processes":[{"id":"web","pid":` + strconv.Itoa(1<<22+7) + `}]}],"services":[],"singletons":[]}`
	for i, content := range []string{"", `{"activeReleaseId": "c2", "rel`, "not json at all", nodeState} {
		state := filepath.Join(dir, fmt.Sprintf("state%d.json", i))
		os.WriteFile(state, []byte(content), 0o644)
		d := startDaemon(t, `statePath: `+strconv.Quote(state)+`, processes: [`+webProcess+`]`)
		s := d.status()
		unreadable := strings.Contains(d.stdout.String(), `"message":"state file unreadable"`)
		if len(s["orphans"].([]any)) != 0 || unreadable != (content != nodeState) {
			t.Fatalf("state %q: orphans %v, log:\n%s", content, s["orphans"], d.stdout.String())
		}
		if unreadable && !strings.Contains(d.stdout.String(), `"statePath":`+strconv.Quote(state)) {
			t.Fatalf("the event names the file: %s", d.stdout.String())
		}
		d.deploy("v1")
		d.shutdown()
		if _, err := os.Stat(state); !os.IsNotExist(err) {
			t.Fatalf("state file after a clean shutdown: %v", err)
		}
	}
	// The directory goes away: every write fails. The daemon keeps
	// running and serving, but a deploy whose processes cannot be
	// recorded is called off: its processes stop, the previous release
	// keeps serving.
	stateDir := filepath.Join(dir, "state")
	os.Mkdir(stateDir, 0o755)
	state := filepath.Join(stateDir, "state.json")
	d := startDaemon(t, `statePath: `+strconv.Quote(state)+`, processes: [{id: "worker", command: "touch {{releasePath}}/worker-ran; exec FIXTURE"}, `+webProcess+`]`)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	os.Rename(stateDir, stateDir+".away")
	r := d.deploy("v2")
	want := "Error: Could not record the processes of release v2 in the state file " + state + ": ENOENT: no such file or directory, open '" + state + ".*.tmp'. The deploy was called off: its processes were stopped and the previous release keeps serving. Make sure the directory of the state file exists and the daemon can write it (rollbridge doctor checks it), then deploy again.\n"
	if r.code != 1 || r.stderr != want {
		t.Fatalf("deploy: %+v\nwant %q", r, want)
	}
	if code, body := d.get("/release"); code != 200 || body != "v1" {
		t.Fatalf("serving: %d %q", code, body)
	}
	if !strings.Contains(d.stdout.String(), `{"error":"ENOENT: no such file or directory, open '`+state+".") {
		t.Fatalf("log:\n%s", d.stdout.String())
	}
	// The worker and the web process of v2 had been spawned, held
	// behind their gates; as they could not be recorded, they were let
	// go without running: the worker never took a job.
	if _, err := os.Stat(filepath.Join(d.dir, "releases", "v2", "worker-ran")); err == nil {
		t.Fatal("the worker of the called-off deploy ran")
	}
	reported := 0
	for _, line := range strings.Split(d.stdout.String(), "\n") {
		var e struct {
			Message string
			Data    struct {
				ReleaseID, State string
				Pid              any
			}
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Data.ReleaseID != "v2" {
			continue
		}
		switch e.Message {
		case "process started":
			t.Fatalf("a process of the called-off deploy started: %s", line)
		case "release startup process status":
			reported++
			if e.Data.State != "stopped" || e.Data.Pid != nil {
				t.Fatalf("after the called-off deploy: %s", line)
			}
		}
	}
	if reported != 4 { // two processes, before and after the cleanup
		t.Fatalf("cleanup report of v2: %d lines\n%s", reported, d.stdout.String())
	}
	os.Rename(stateDir+".away", stateDir)
	d.shutdown()
}

func TestRecoverWithoutStatePath(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rollbridge.js"), []byte(appConfig(dir, `processes: [`+webProcess+`]`)), 0o644)
	for _, args := range [][]string{{"recover"}, {"recover", "--force"}} {
		if r := rollbridge(t, dir, args...); r.code != 1 || r.stdout != "" || r.stderr != "No statePath is configured; set statePath in the config to enable recovery.\n" {
			t.Fatalf("%v: %+v", args, r)
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDoctor(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// No config.
	if r := rollbridge(t, dir, "doctor"); r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "No config file found") {
		t.Fatalf("no config: %+v", r)
	}
	if r := rollbridge(t, dir, "doctor", "--json"); r.code != 1 || !strings.Contains(r.stdout, "\"name\": \"config\",\n      \"ok\": false") || !strings.HasSuffix(r.stdout, "\n  ],\n  \"ok\": false\n}\n") {
		t.Fatalf("no config, JSON: %+v", r)
	}
	// An invalid config reports only the config check.
	bad := write("bad.js", `export default {proxy: {port: "x"}, processes: []};`)
	if r := rollbridge(t, dir, "doctor", "-c", bad); r.code != 1 || r.stdout != "✗ config: 2 issues — run \"rollbridge validate\" for details\n" || r.stderr != "\n1 check failed.\n" {
		t.Fatalf("invalid config: %+v", r)
	}

	// Everything fine, with a prepared release (and a proxy port outside
	// the ephemeral range, which doctor would warn about).
	port := freeTestPort(t)
	rel := filepath.Join(dir, "releases", "r1")
	os.MkdirAll(filepath.Join(rel, "jobs"), 0o755)
	good := write("app/rollbridge.js", fmt.Sprintf(`export default {
  application: "docapp", control: {path: %q}, statePath: %q, proxy: {port: %d},
  processes: [
    {id: "web", policy: "proxied", command: "serve --port {{port}} --rev {{revision}}", port: {from: 31000, to: 31010}},
    {id: "jobs", command: "work {{releaseId}}", cwd: "jobs", env: {HOME_DIR: "{{env.PATH}}"}}
  ]
};`, filepath.Join(dir, "app", "rb.sock"), filepath.Join(dir, "app", "state.json"), port))
	r := rollbridge(t, dir, "doctor", "-c", good, "--release-path", "releases/r1")
	want := fmt.Sprintf(`✓ config: valid: 2 processes, proxy on 127.0.0.1:%d
✓ control socket: no daemon running; %s is free to bind
✓ control socket directory: %s is writable
✓ proxy port: 127.0.0.1:%d is available
✓ open files: no daemon running; a daemon started here raises its soft limit to just below the hard limit of %s (the processes it starts keep the soft limit it was started with)
✓ state path directory: %s is writable
✓ orphaned processes: no leftover processes from a previous daemon
✓ release path: %s exists
✓ process templates: all 2 process command/cwd/env templates resolve
✓ process working directories: all 2 process working directories exist

All checks passed.
`, port, filepath.Join(dir, "app", "rb.sock"), filepath.Join(dir, "app"), port, hardFileLimit(t), filepath.Join(dir, "app"), rel)
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("all good: %+v\nwant\n%s", r, want)
	}
	r = rollbridge(t, dir, "doctor", "-c", good, "--json")
	var report struct {
		Checks []map[string]any
		OK     bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil || r.code != 0 || !report.OK || len(report.Checks) != 7 ||
		!strings.HasPrefix(r.stdout, "{\n  \"checks\": [\n    {\n      \"detail\": \"valid: 2 processes") {
		t.Fatalf("JSON: %+v", r)
	}

	// Each check failing.
	taken, _ := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	defer taken.Close()
	broken := write("broken/rollbridge.js", fmt.Sprintf(`export default {
  application: "docapp", control: {path: %q}, statePath: %q, proxy: {port: %d},
  processes: [
    {id: "web", policy: "proxied", command: "serve {{env.ROLLBRIDGE_NOPE_SECRET}}", port: {from: 31000, to: 31010}},
    {id: "jobs", command: "work", cwd: "missing-jobs"},
    {id: "cron", command: "cron", cwd: "/nonexistent-rollbridge-dir"},
    {id: "mail", command: "mail {{bogus}}"}
  ]
};`, filepath.Join(dir, "no-such-dir", "rb.sock"), filepath.Join(dir, "no-state-dir", "s.json"), port))
	r = rollbridge(t, dir, "doctor", "-c", broken, "--release-path", "releases/missing", "--revision", "abc")
	want = fmt.Sprintf(`✓ config: valid: 4 processes, proxy on 127.0.0.1:%d
✓ control socket: no daemon running; %s is free to bind
✗ control socket directory: %s is missing or not writable
✗ proxy port: 127.0.0.1:%d is unavailable (EADDRINUSE)
✓ open files: no daemon running; a daemon started here raises its soft limit to just below the hard limit of %s (the processes it starts keep the soft limit it was started with)
✗ state path directory: %s is missing or not writable; state cannot be persisted
✓ orphaned processes: no leftover processes from a previous daemon
✗ release path: %s is missing or not a directory
✗ process templates: unresolved templates — web: Missing template value for {{env.ROLLBRIDGE_NOPE_SECRET}}; mail: Missing template value for {{bogus}}
✗ process working directories: missing working directories: jobs (%s), cron (/nonexistent-rollbridge-dir)
`, port, filepath.Join(dir, "no-such-dir", "rb.sock"), filepath.Join(dir, "no-such-dir"), port, hardFileLimit(t), filepath.Join(dir, "no-state-dir"),
		filepath.Join(dir, "releases", "missing"), filepath.Join(dir, "releases", "missing", "missing-jobs"))
	if r.code != 1 || r.stdout != want || r.stderr != "\n6 checks failed.\n" {
		t.Fatalf("failures: %+v\nwant\n%s", r, want)
	}

	// The control socket: a probe error, a foreign listener.
	notDir := write("file", "x")
	probeErr := write("probe-error.js", fmt.Sprintf(`export default {control: {path: %q}, proxy: {port: 0}, processes: [{id: "web", policy: "proxied", command: "x", port: {from: 31000, to: 31010}}]};`, filepath.Join(notDir, "rb.sock")))
	if r := rollbridge(t, dir, "doctor", "-c", probeErr); r.code != 1 || !strings.Contains(r.stdout, "✗ control socket: could not probe "+filepath.Join(notDir, "rb.sock")+": connect ENOTDIR "+filepath.Join(notDir, "rb.sock")+"\n") {
		t.Fatalf("probe error: %+v", r)
	}
	foreignPath := filepath.Join(dir, "foreign.sock")
	foreign, err := net.Listen("unix", foreignPath)
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	go func() {
		for {
			c, err := foreign.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	foreignCfg := write("foreign.js", fmt.Sprintf(`export default {control: {path: %q}, proxy: {port: 0}, processes: [{id: "web", policy: "proxied", command: "x", port: {from: 31000, to: 31010}}]};`, foreignPath))
	if r := rollbridge(t, dir, "doctor", "-c", foreignCfg); r.code != 1 || !strings.Contains(r.stdout, "✗ control socket: another process is already listening on "+foreignPath+"; the daemon would fail to bind it\n") {
		t.Fatalf("foreign listener: %+v", r)
	}
}

// With a running daemon: its own config passes (socket and proxy port
// held by it), another application's config on the same socket fails.
func TestDoctorNextToARunningDaemon(t *testing.T) {
	port := freePort(t)
	d := startDaemon(t, fmt.Sprintf(`proxy: {port: %d}, processes: [`+webProcess+`]`, port))
	r := d.cli("doctor")
	if r.code != 0 || !strings.Contains(r.stdout, "✓ control socket: Rollbridge daemon for \"itest\" is running on "+d.sock+"\n") ||
		!strings.Contains(r.stdout, fmt.Sprintf("✓ proxy port: 127.0.0.1:%d is already held by the running Rollbridge daemon\n", port)) {
		t.Fatalf("doctor: %+v", r)
	}
	other := filepath.Join(d.dir, "other.js")
	os.WriteFile(other, []byte(fmt.Sprintf(`export default {application: "other", control: {path: %q}, proxy: {port: %d}, processes: [{id: "web", policy: "proxied", command: "x", port: {from: 31000, to: 31010}}]};`, d.sock, port)), 0o644)
	r = rollbridge(t, d.dir, "doctor", "-c", other)
	if r.code != 1 || !strings.Contains(r.stdout, "✗ control socket: a Rollbridge daemon for \"itest\" is already running on "+d.sock+"; stop it before starting another\n") ||
		!strings.Contains(r.stdout, fmt.Sprintf("✗ proxy port: 127.0.0.1:%d is unavailable (EADDRINUSE)\n", port)) {
		t.Fatalf("other application: %+v", r)
	}
}

// startLegacy starts a process outside rollbridge, as screen or
// process_bot would have; the test kills its group at the end.
func startLegacy(t *testing.T, argv0 string, args ...string) int {
	t.Helper()
	cmd := exec.Command(fixture, args...)
	cmd.Args[0] = argv0
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return cmd.Process.Pid
}

// childrenOf lists the pids whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(e.Name())
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

func TestPredeployCleanup(t *testing.T) {
	marker := fmt.Sprintf("legacy-marker-%d", os.Getpid())
	screen := startLegacy(t, "SCREEN -dmS "+marker+"-screen", "-grandchildren", "1")
	worker := startLegacy(t, fixture, "-grandchildren", "2", "-ignore", "SIGTERM", marker)
	bystander := startLegacy(t, fixture, marker+"-other")
	var targets []int
	waitUntil(t, "the legacy processes to start their children", 10*time.Second, func() bool {
		targets = append(append([]int{screen, worker}, childrenOf(screen)...), childrenOf(worker)...)
		return len(targets) == 5
	})

	d := startDaemon(t, `proxy: {port: `+strconv.Itoa(freePort(t))+`}, legacyTakeover: {screens: [`+strconv.Quote(marker+"-screen")+`], processes: [{name: "jobs", includes: [`+strconv.Quote(marker)+`, "-ignore"]}], forceStopTimeoutMs: 300},
  processes: [`+webProcess+`]`)
	// A daemon with an active release: nothing is touched.
	d.deploy("v1")
	if r := d.cli("predeploy-cleanup"); r.code != 0 || r.stdout != "Rollbridge daemon already has an active release; no legacy cleanup needed.\n" {
		t.Fatalf("active release: %+v", r)
	}
	for _, pid := range targets {
		if !alive(pid) {
			t.Fatalf("pid %d was stopped although a release is active", pid)
		}
	}
	// A pending release that brings another rollbridge package version
	// restarts the daemon.
	for path, version := range map[string]string{filepath.Join(d.dir, "releases", "v1"): "0.1.20", filepath.Join(d.dir, "releases", "v2"): "0.1.21"} {
		os.MkdirAll(filepath.Join(path, "node_modules", "rollbridge"), 0o755)
		os.WriteFile(filepath.Join(path, "node_modules", "rollbridge", "package.json"), []byte(`{"name": "rollbridge", "version": "`+version+`"}`), 0o644)
	}
	s := d.status()
	r := d.cli("predeploy-cleanup", "--release-path", filepath.Join(d.dir, "releases", "v2"))
	if r.code != 0 || r.stdout != "Stopped existing Rollbridge daemon before deploy.\nRecovered 0 Rollbridge orphaned processes.\nStopped 5 legacy processes.\n" {
		t.Fatalf("cleanup: %+v", r)
	}
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon is still running")
	}
	d.recordPids(s)
	d.assertNothingLeft()
	for _, pid := range targets {
		if alive(pid) {
			t.Fatalf("legacy pid %d survived", pid)
		}
	}
	if !alive(bystander) {
		t.Fatal("an unrelated process was stopped")
	}
	// Nothing left to do: no daemon, no legacy processes.
	if r := rollbridge(t, d.dir, "predeploy-cleanup", "-c", d.config); r.code != 0 || r.stdout != "No active Rollbridge daemon found.\nRecovered 0 Rollbridge orphaned processes.\nStopped 0 legacy processes.\n" {
		t.Fatalf("second run: %+v", r)
	}
}

func TestPredeployCleanupRefusals(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "rb.sock")
	foreign, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := foreign.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	os.WriteFile(filepath.Join(dir, "rollbridge.js"), []byte(appConfig(dir, `processes: [`+webProcess+`]`)), 0o644)
	if r := rollbridge(t, dir, "predeploy-cleanup"); r.code != 1 || r.stderr != "Error: A non-Rollbridge process is using "+sock+"; refusing predeploy cleanup.\n" {
		t.Fatalf("foreign socket: %+v", r)
	}
	foreign.Close()
	os.Remove(sock)
	// Another application's daemon on the socket.
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	other := filepath.Join(d.dir, "other.js")
	os.WriteFile(other, []byte(fmt.Sprintf(`export default {application: "other", control: {path: %q}, proxy: {port: 0}, processes: [{id: "web", policy: "proxied", command: "x", port: {from: 31000, to: 31010}}]};`, d.sock)), 0o644)
	if r := rollbridge(t, d.dir, "predeploy-cleanup", "-c", other); r.code != 1 || r.stderr != "Error: A Rollbridge daemon for \"itest\" is using "+d.sock+"; expected \"other\".\n" {
		t.Fatalf("other application: %+v", r)
	}
	// A daemon without an active release is shut down.
	if r := d.cli("predeploy-cleanup"); r.code != 0 || !strings.HasPrefix(r.stdout, "Stopped existing Rollbridge daemon before deploy.\n") {
		t.Fatalf("idle daemon: %+v", r)
	}
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle daemon is still running")
	}
}

// A Node.js state file records no start times: a live pid that no longer
// leads a process group is most likely recycled and is left alone.
func TestRecoverSkipsPidsThatLeadNoGroup(t *testing.T) {
	dir := t.TempDir()
	leader := startLegacy(t, fixture, "-grandchildren", "1")
	var child int
	// The sleeping grandchild, once it runs as one: a child caught
	// between fork and exec is not yet the process the test is about.
	waitUntil(t, "the sleeping child to start", 10*time.Second, func() bool {
		kids := childrenOf(leader)
		if len(kids) != 1 {
			return false
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", kids[0]))
		child = kids[0]
		return bytes.HasSuffix(cmdline, []byte("\x00-sleep\x00"))
	})
	state := filepath.Join(dir, "state.json")
	os.WriteFile(state, []byte(fmt.Sprintf(`{"activeReleaseId":"r1","releases":[{"releaseId":"r1","processes":[{"id":"jobs","pid":%d}]}],"services":[],"singletons":[]}`, child)), 0o644)
	os.WriteFile(filepath.Join(dir, "rollbridge.js"), []byte(appConfig(dir, `statePath: `+strconv.Quote(state)+`, processes: [`+webProcess+`]`)), 0o644)
	r := rollbridge(t, dir, "recover", "--force")
	want := fmt.Sprintf("Skipped 1 orphaned process that no longer lead their process group (pid likely recycled):\n  jobs (pid %d, release r1)\n", child)
	if r.code != 0 || r.stdout != want || !alive(child) || !alive(leader) {
		t.Fatalf("recover --force: %+v (child alive %v)", r, alive(child))
	}
}

func TestRecoverReportWithSurvivors(t *testing.T) {
	rel := "v1"
	rec := &engine.Recovery{
		Found:     []engine.Orphan{{ID: "web", Pid: 10, ReleaseID: &rel}, {ID: "beacon", Pid: 11}},
		Stopped:   []engine.Orphan{{ID: "web", Pid: 10, ReleaseID: &rel}},
		Survivors: []engine.Orphan{{ID: "beacon", Pid: 11}},
	}
	var out, errOut strings.Builder
	err := writeRecovery(&out, &errOut, rec, true)
	want := "Stopped 1 orphaned process:\n  web (pid 10, release v1)\nCould not stop 1 orphaned process — still running (check permissions/ownership):\n  beacon (pid 11)\nLeft the state file in place so you can investigate and re-run recover.\n"
	if err != exitCode(1) || out.String() != "" || errOut.String() != want {
		t.Fatalf("err %v\nstdout %q\nstderr %q", err, out.String(), errOut.String())
	}
}

// recover --force stops the whole group: a member that ignores SIGTERM
// is SIGKILLed even after the leader itself exited.
func TestRecoverStopsTheWholeGroup(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `(trap '' TERM; exec sleep 1000) & echo $! > child; wait`)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	var child int
	waitUntil(t, "the child to start", 10*time.Second, func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "child"))
		child, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return child != 0
	})
	state := filepath.Join(dir, "state.json")
	os.WriteFile(state, []byte(fmt.Sprintf(`{"releases":[],"services":[{"id":"beacon","process":{"id":"beacon","pid":%d}}],"singletons":[]}`, cmd.Process.Pid)), 0o644)
	// A Node.js entry is acted on only for a process that started before
	// the file was written (with a second's margin).
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(state, later, later)
	os.WriteFile(filepath.Join(dir, "rollbridge.js"), []byte(appConfig(dir, `statePath: `+strconv.Quote(state)+`, proxy: {port: 0, forceStopTimeoutMs: 300}, processes: [`+webProcess+`]`)), 0o644)
	r := rollbridge(t, dir, "recover", "--force")
	if r.code != 0 || r.stdout != fmt.Sprintf("Stopped 1 orphaned process:\n  beacon (pid %d)\n", cmd.Process.Pid) {
		t.Fatalf("recover --force: %+v", r)
	}
	if alive(child) {
		t.Fatalf("the group member %d that ignores SIGTERM survived", child)
	}
}
