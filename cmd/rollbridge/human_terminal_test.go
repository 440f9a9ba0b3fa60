package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// onTerminal runs the built binary with stdout on a fresh pseudo-terminal
// (stderr on a pipe, so the progress lines stay out of it) and extra
// environment, and returns what the terminal showed, with the
// terminal's "\r\n" turned back into "\n", and the exit status.
func onTerminal(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	return runOnTerminal(t, dir, env, false, args...)
}

// runOnPTY runs the binary with stdout and stderr on one pseudo-terminal.
func runOnPTY(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	return runOnTerminal(t, "", env, true, args...)
}

// runOnTerminal runs the binary in dir with stdout, and with stderrToo
// also stderr, on a fresh pseudo-terminal.
func runOnTerminal(t *testing.T, dir string, env []string, stderrToo bool, args ...string) (string, int) {
	t.Helper()
	_, term, seen := recordPTY(t)
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = term, &stderr
	if stderrToo {
		cmd.Stderr = term
	}
	code := 0
	if err := cmd.Run(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return strings.ReplaceAll(readBack(t, term, seen), "\r\n", "\n"), code
}

// lineOf is the first of lines that starts with prefix, "" if none does.
func lineOf(lines []string, prefix string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// colour is the environment of a terminal that shows colour.
var colour = []string{"TERM=xterm-256color", "NO_COLOR="}

// cliOnTerminal runs a command of d on a terminal.
func (d *testDaemon) cliOnTerminal(env []string, args ...string) (string, int) {
	d.t.Helper()
	args = append(args[:1:1], append([]string{"-c", d.config}, args[1:]...)...)
	return onTerminal(d.t.(*testing.T), d.dir, env, args...)
}

// The status of a typical app (web, two worker replicas, a singleton, a
// service) on a terminal: one screen with the daemon, the releases, every
// running process with its real pid, policy and port, and the crash of a
// worker among the recent problems. NO_COLOR and TERM=dumb remove every
// escape sequence and nothing else; --json prints the JSON.
func TestStatusOnATerminal(t *testing.T) {
	d := startDaemon(t, typicalApp())
	for _, id := range []string{"r1", "r2"} {
		if r := d.deploy(id); r.code != 0 {
			t.Fatalf("deploy %s: %+v", id, r)
		}
	}
	waitReleaseState(t, d, "r1", "stopped")
	// A worker crashes and is restarted.
	s := d.status()
	victim := int(release(s, "r2")["processes"].([]any)[1].(map[string]any)["pid"].(float64))
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "worker#1 restarted", 10*time.Second, func() bool {
		p := release(d.status(), "r2")["processes"].([]any)[1].(map[string]any)
		return p["restarts"] == float64(1) && p["state"] == "running"
	})
	s = d.status()
	daemonPID := d.cmd.Process.Pid

	screen, code := d.cliOnTerminal(colour, "status")
	if code != 0 {
		t.Fatalf("status exited %d:\n%s", code, screen)
	}
	if !strings.Contains(screen, "\033[") {
		t.Errorf("no colour on a colour terminal:\n%q", screen)
	}
	plain := stripANSI(screen)
	t.Logf("status on a terminal:\n%s", plain)
	lines := strings.Split(strings.TrimRight(plain, "\n"), "\n")
	if len(lines) > 30 {
		t.Errorf("%d lines for a typical app: more than a screen", len(lines))
	}
	head := regexp.MustCompile(`^itest  daemon pid ` + strconv.Itoa(daemonPID) + `, up \d+s, version 0\.2\.0$`)
	if !head.MatchString(lines[0]) {
		t.Errorf("daemon line %q", lines[0])
	}
	for _, want := range []string{
		"  proxy   127.0.0.1:" + strconv.Itoa(d.port) + " → r2",
		"  config  " + d.config + " (used by this command)",
		"  socket  " + d.sock,
	} {
		if !strings.Contains(plain, want+"\n") {
			t.Errorf("missing %q", want)
		}
	}
	rowFields := func(prefix string) []string {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return strings.Fields(l)
			}
		}
		t.Errorf("no line starting with %q in\n%s", prefix, plain)
		return nil
	}
	// Deployed without --revision: the daemon's revision is the release
	// id, and the column shows "-" rather than repeat it.
	if f := rowFields("r2 "); len(f) < 4 || f[1] != "-" || f[2] != "active" {
		t.Errorf("r2 row %v", f)
	}
	if f := rowFields("r1 "); len(f) < 4 || f[2] != "stopped" {
		t.Errorf("r1 row %v", f)
	}
	if i, j := strings.Index(plain, "\nr2 "), strings.Index(plain, "\nr1 "); i < 0 || j < i {
		t.Errorf("the newest release comes first")
	}
	// Every running process with the pid status reports for it.
	pidOf := map[string]string{}
	for _, p := range release(s, "r2")["processes"].([]any) {
		m := p.(map[string]any)
		pidOf[m["id"].(string)] = strconv.Itoa(int(m["pid"].(float64)))
	}
	for _, key := range []string{"singletons", "services"} {
		for _, e := range s[key].([]any) {
			m := e.(map[string]any)
			pidOf[m["id"].(string)] = strconv.Itoa(int(m["process"].(map[string]any)["pid"].(float64)))
		}
	}
	webPort := strconv.Itoa(int(release(s, "r2")["ports"].(map[string]any)["web"].(float64)))
	for _, want := range [][]string{
		{"web", "r2", "proxied", pidOf["web"], "running"},
		{"worker#0", "r2", "companion", pidOf["worker#0"], "running"},
		{"worker#1", "r2", "companion", pidOf["worker#1"], "running"},
		{"scheduler", "-", "singleton", pidOf["scheduler"], "running"},
		{"cache", "-", "service", pidOf["cache"], "running"},
	} {
		f := rowFields(want[0] + " ")
		if len(f) < 9 || strings.Join(f[:5], " ") != strings.Join(want, " ") {
			t.Errorf("%s row %v, want it to begin with %v", want[0], f, want)
		}
		if want[0] == "web" && f[len(f)-1] != webPort {
			t.Errorf("web row %v, want port %s", f, webPort)
		}
		// No process has a memory block, so the daemon samples none: the
		// CLI measured each group's RSS itself.
		if rss := regexp.MustCompile(`  \d+(\.\d)? (B|KiB|MiB)  `); !rss.MatchString(lineOf(lines, want[0]+" ")) {
			t.Errorf("%s row %q: no RSS measured", want[0], lineOf(lines, want[0]+" "))
		}
		if want[0] == "worker#1" && !strings.Contains(strings.Join(f, " "), "1 (last: crash)") {
			t.Errorf("worker#1 row %v: its crash restart is not shown", f)
		}
	}
	if strings.Count(plain, "\nweb ") != 1 {
		t.Errorf("the stopped release's processes are listed:\n%s", plain)
	}
	crash := regexp.MustCompile(`\n  \d\d:\d\d:\d\d  process crashed +processId=worker#1 releaseId=r2 code=null signal=SIGKILL\n`)
	if !strings.Contains(plain, "Recent problems") || !crash.MatchString(plain) {
		t.Errorf("the crash is not among the recent problems:\n%s", plain)
	}

	// No colour: NO_COLOR (any non-empty value) and TERM=dumb.
	for _, env := range [][]string{{"TERM=xterm-256color", "NO_COLOR=1"}, {"TERM=dumb", "NO_COLOR="}, {"TERM=xterm", "NO_COLOR=false"}} {
		out, _ := d.cliOnTerminal(env, "status")
		if strings.ContainsRune(out, '\033') {
			t.Errorf("%v: escape sequences in\n%q", env, out)
		}
		if !strings.HasPrefix(out, "itest  daemon pid ") || !strings.Contains(out, "\nworker#1 ") {
			t.Errorf("%v: not the status screen:\n%s", env, out)
		}
	}

	// Reached through --socket, without a config: the same screen, minus
	// what only the config tells (its path, the policies).
	out, code := onTerminal(t, d.dir, []string{"TERM=dumb", "ROLLBRIDGE_CONFIG=/nonexistent/rollbridge.js"}, "status", "--socket", d.sock)
	if code != 0 || !head.MatchString(strings.SplitN(out, "\n", 2)[0]) || strings.Contains(out, "  config  ") ||
		!strings.Contains(out, "  socket  "+d.sock+"\n") || !strings.Contains(out, "\nworker#1 ") {
		t.Errorf("status --socket on a terminal: exit %d\n%s", code, out)
	}

	// --json on a terminal is the JSON a pipe gets.
	out, code = d.cliOnTerminal(colour, "status", "--json")
	var parsed map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &parsed) != nil || parsed["activeReleaseId"] != "r2" {
		t.Errorf("status --json on a terminal: exit %d\n%s", code, out)
	}
	if piped := d.cli("status"); normalizeOutput(out, d.dir) != normalizeOutput(piped.stdout, d.dir) {
		t.Errorf("status --json on a terminal differs from the piped form:\n%s\n---\n%s", out, piped.stdout)
	}
}

// The summaries of deploy, rollback, restart, stop, shutdown and
// ensure-daemon on a terminal; with --json each prints exactly what a
// pipe gets.
func TestSummariesOnATerminal(t *testing.T) {
	d := startDaemon(t, typicalApp())
	rel := d.releasePath
	addr := "127.0.0.1:" + strconv.Itoa(d.port)
	check := func(what, got string, code int, want string) {
		t.Helper()
		if code != 0 || strings.ContainsRune(got, '\033') || !regexp.MustCompile(`^`+want+`$`).MatchString(got) {
			t.Errorf("%s: exit %d\n%q\nwant the pattern\n%q", what, code, got, want)
		}
	}
	noColour := []string{"TERM=xterm", "NO_COLOR=1"}
	pid := strconv.Itoa(d.cmd.Process.Pid)

	out, code := d.cliOnTerminal(noColour, "ensure-daemon")
	check("ensure-daemon", out, code, `Daemon already running \(pid `+pid+`, version 0\.2\.0\): proxy on `+regexp.QuoteMeta(addr)+`, no active release\n`)

	out, code = d.cliOnTerminal(noColour, "deploy", "--release-path", rel("r1"), "--release-id", "r1", "--revision", "abc1111")
	check("first deploy", out, code, `Deployed r1 \(rev abc1111\): active on `+regexp.QuoteMeta(addr)+`\n  no previous release\n`)

	// A deploy while a request is open on r1: r1 drains it. The request
	// stays open until the client gives up after the deploy, however long
	// the deploy takes (a request that ended by itself after a few seconds
	// could end before a deploy slowed down by load switched).
	ctx, leave := context.WithCancel(context.Background())
	defer leave()
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url("/slow?ms=120000"), nil)
		if err != nil {
			return
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, "one open request on r1", 10*time.Second, func() bool {
		return release(d.status(), "r1")["connectionCount"] == float64(1)
	})
	out, code = d.cliOnTerminal(noColour, "deploy", "--release-path", rel("r2"), "--release-id", "r2")
	check("deploy", out, code, `Deployed r2: active on `+regexp.QuoteMeta(addr)+`\n  previous r1 draining, 1 open connection\n`)
	leave() // the client closes its connection: r1 has nothing left to drain
	<-done
	waitReleaseState(t, d, "r1", "stopped")

	out, code = d.cliOnTerminal(noColour, "restart", "--policy", "companion")
	check("restart", out, code, `Restarted 2 processes: worker#0, worker#1\n`)

	out, code = d.cliOnTerminal(noColour, "rollback")
	check("rollback", out, code, `Rolled back to r1 \(rev abc1111\): active on `+regexp.QuoteMeta(addr)+`\n  previous r2 (draining, 0 open connections|stopped)\n`)
	waitReleaseState(t, d, "r2", "stopped")

	out, code = d.cliOnTerminal(noColour, "stop", "--release-id", "r2")
	check("stop of a stopped release", out, code, `Release r2 was already stopped\.\nActive release: r1\n`)

	// The JSON forms on a terminal, with --json, are the piped ones.
	for _, args := range [][]string{{"restart", "--process", "cache"}, {"ensure-daemon"}} {
		onTerm, code := d.cliOnTerminal(colour, append(args, "--json")...)
		piped := d.cli(args...)
		if code != 0 || normalizeOutput(onTerm, d.dir) != normalizeOutput(piped.stdout, d.dir) || !strings.HasPrefix(onTerm, "{\n") {
			t.Errorf("%v --json on a terminal:\n%s\npiped:\n%s", args, onTerm, piped.stdout)
		}
	}
	out, code = d.cliOnTerminal(colour, "deploy", "--release-path", rel("r3"), "--release-id", "r3", "--json")
	if code != 0 || out != "{\n  \"status\": \"success\",\n  \"activeReleaseId\": \"r3\",\n  \"previousReleaseId\": \"r1\"\n}\n" {
		t.Errorf("deploy --json on a terminal: %d %q", code, out)
	}
	out, code = d.cliOnTerminal(colour, "rollback", "--json")
	if code != 0 || out != "{\n  \"status\": \"success\",\n  \"activeReleaseId\": \"r1\",\n  \"previousReleaseId\": \"r3\"\n}\n" {
		t.Errorf("rollback --json on a terminal: %d %q", code, out)
	}

	out, code = d.cliOnTerminal(noColour, "stop")
	check("stop", out, code, `Stopped release r1 \(3 processes, was active\)\.\nNo release is active: the proxy answers 503 until the next deploy or rollback\.\n`)

	d.status()
	out, code = d.cliOnTerminal(noColour, "shutdown")
	check("shutdown", out, code, `The daemon of itest has shut down; every process it ran has stopped \(2 processes were running\)\.\n`)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not exit after shutdown")
	}
}

// stop and shutdown with --json on a terminal print what a pipe gets.
func TestStopAndShutdownJSONOnATerminal(t *testing.T) {
	d := startDaemon(t, typicalApp())
	if r := d.deploy("r1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	out, code := d.cliOnTerminal(colour, "stop", "--json")
	var s map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s["status"] != "success" || s["activeReleaseId"] != nil || !strings.HasPrefix(out, "{\n  \"status\": \"success\",\n  \"activeReleaseId\": null,\n") {
		t.Errorf("stop --json on a terminal: %d\n%s", code, out)
	}
	d.status()
	out, code = d.cliOnTerminal(colour, "shutdown", "--json")
	if code != 0 || out != "{\n  \"status\": \"success\",\n  \"message\": \"shutdown\"\n}\n" {
		t.Errorf("shutdown --json on a terminal: %d %q", code, out)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not exit after shutdown")
	}
}

// events on a terminal: local times, aligned messages, key=value; with
// --json the JSON array.
func TestEventsOnATerminal(t *testing.T) {
	d := startDaemon(t, typicalApp())
	if r := d.deploy("r1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	out, code := d.cliOnTerminal([]string{"TERM=xterm", "NO_COLOR=1"}, "events")
	line := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  deploy starting +releaseId=r1 releasePath=` + regexp.QuoteMeta(filepath.Join(d.dir, "releases", "r1")) + `$`)
	if code != 0 || !line.MatchString(out) || strings.Contains(out, "{\"") {
		t.Errorf("events on a terminal:\n%s", out)
	}
	out, code = d.cliOnTerminal(colour, "events", "--json")
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) == 0 {
		t.Errorf("events --json on a terminal:\n%s", out)
	}

	// --follow on a terminal: the same readable lines, also for new events.
	_, term, seen := recordPTY(t)
	follow := exec.Command(binary, "events", "-c", d.config, "--follow", "--limit", "1")
	follow.Env = append(os.Environ(), "TERM=xterm", "NO_COLOR=1")
	follow.Stdout, follow.Stderr = term, io.Discard
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follow.Process.Kill(); follow.Wait() })
	waitUntil(t, "the replayed event", 10*time.Second, func() bool { return strings.Contains(seen.String(), "\r\n") })
	if r := d.cli("restart", "--process", "cache"); r.code != 0 {
		t.Fatalf("restart: %+v", r)
	}
	requested := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  process restart requested  processId=cache\r$`)
	waitUntil(t, "the live event on the terminal", 10*time.Second, func() bool { return requested.MatchString(seen.String()) })
	if strings.Contains(seen.String(), `{"`) {
		t.Errorf("JSON in the followed events:\n%s", seen.String())
	}
}

// A foreground daemon on a terminal logs readable lines; piped it logs
// JSON (TestPipedOutputGolden pins those lines).
func TestForegroundDaemonLogOnATerminal(t *testing.T) {
	d := newTestDaemon(t, typicalApp())
	_, term, seen := recordPTY(t)
	d.stdout, d.stderr, d.exited = &syncBuffer{}, &syncBuffer{}, make(chan struct{})
	d.cmd = exec.Command(binary, "daemon", "-c", d.config)
	d.cmd.Dir = d.dir
	d.cmd.Env = append(os.Environ(), "TERM=xterm", "NO_COLOR=1")
	d.cmd.Stdout, d.cmd.Stderr = term, d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(d.cleanup)
	waitUntil(t, "the daemon to answer", 10*time.Second, func() bool { return d.cli("status").code == 0 })
	if r := d.deploy("r1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  proxy listening +host=127\.0\.0\.1 port=\d+\r$`),
		regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  control socket listening   path=` + regexp.QuoteMeta(d.sock) + `\r$`),
		regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  deploy starting +releaseId=r1 releasePath=\S+\r$`),
		regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d  traffic switched +previousReleaseId=null releaseId=r1\r$`),
	}
	for _, re := range want {
		waitUntil(t, "the terminal to show "+re.String(), 10*time.Second, func() bool { return re.MatchString(seen.String()) })
	}
	if strings.Contains(seen.String(), `{"at"`) || strings.ContainsRune(seen.String(), '\033') {
		t.Errorf("JSON or colour on the terminal:\n%s", seen.String())
	}
}

// ensure-daemon on a terminal that has to start the daemon says so, with
// the pid of the daemon it started.
func TestEnsureDaemonStartsOnATerminal(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	if err := os.WriteFile(config, []byte(appConfig(dir, typicalApp())), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "daemon.pid")
	pid := 0
	t.Cleanup(func() {
		if pid == 0 || !alive(pid) {
			return
		}
		rollbridge(t, dir, "shutdown", "-c", config)
		deadline := time.Now().Add(30 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Error("the ensured daemon had to be killed at the end of the test")
		}
	})
	out, code := onTerminal(t, dir, []string{"TERM=xterm", "NO_COLOR=1"}, "ensure-daemon", "-c", config,
		"--daemon-log-path", filepath.Join(dir, "daemon.log"), "--daemon-pid-path", pidFile)
	if data, err := os.ReadFile(pidFile); err == nil {
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	want := regexp.MustCompile(`^Started the daemon \(pid ` + strconv.Itoa(pid) + `, version 0\.2\.0\): proxy on 127\.0\.0\.1:\d+, no active release\n$`)
	if code != 0 || pid == 0 || !want.MatchString(out) {
		t.Errorf("ensure-daemon on a terminal: exit %d, pid %d\n%q", code, pid, out)
	}
	// Its log is a file, even though ensure-daemon ran on a terminal: JSON.
	waitUntil(t, "the daemon's first log line", 10*time.Second, func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
		return strings.Contains(string(data), "\n")
	})
	data, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
	if !strings.HasPrefix(string(data), `{"at":"`) || !strings.Contains(string(data), `"message":"proxy listening"}`) {
		t.Errorf("the log file of an ensured daemon is not JSON:\n%s", data)
	}
}
