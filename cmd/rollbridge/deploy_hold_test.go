package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdWeb is the fixture as the proxied process, on the private port
// window, with a variable rendered from the release id.
func holdWeb() string {
	from, to := privatePorts()
	return fmt.Sprintf(`processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: %d, to: %d}, health: {intervalMs: 20}, env: {GREETING: "hi-{{releaseId}}"}}]`, from, to)
}

// sample is one request of a releaseRecorder: when it was sent, when its
// answer came, which release answered (the fixture's /release body).
type sample struct {
	sent, recv time.Time
	release    string
	err        string
}

// releaseRecorder keeps clients busy through the proxy, half on one
// keep-alive connection each, half on a new connection per request, and
// records every request. Each request is sent once (raw connections, no
// client retries that would hide a failure).
type releaseRecorder struct {
	done    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples []sample
}

func recordReleases(addr string, clients int, path string) *releaseRecorder {
	rec := &releaseRecorder{done: make(chan struct{})}
	for i := 0; i < clients; i++ {
		keepAlive := i%2 == 0
		rec.wg.Add(1)
		go func() {
			defer rec.wg.Done()
			var c *keepAliveConn
			for {
				select {
				case <-rec.done:
					if c != nil {
						c.Close()
					}
					return
				default:
				}
				s := sample{sent: time.Now()}
				var err error
				if c == nil {
					c, err = dialKeepAlive(addr)
				}
				if err == nil {
					var code int
					var closing bool
					code, s.release, closing, err = c.get(path)
					if err == nil && code != 200 {
						err = fmt.Errorf("HTTP %d: %s", code, s.release)
					}
					if err != nil || closing || !keepAlive {
						c.Close()
						c = nil
					}
				}
				s.recv = time.Now()
				if err != nil {
					s.err = err.Error()
				}
				rec.mu.Lock()
				rec.samples = append(rec.samples, s)
				rec.mu.Unlock()
			}
		}()
	}
	return rec
}

// count is how many answers release gave so far.
func (r *releaseRecorder) count(release string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.samples {
		if s.err == "" && s.release == release {
			n++
		}
	}
	return n
}

func (r *releaseRecorder) stop() []sample {
	close(r.done)
	r.wg.Wait()
	return r.samples
}

func failures(samples []sample) []string {
	var out []string
	for _, s := range samples {
		if s.err != "" {
			out = append(out, s.sent.Format("15:04:05.000")+" "+s.err)
		}
	}
	return out
}

// nanoFile reads a `date +%s%N` written by a command.
func nanoFile(t *testing.T, path string) time.Time {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return time.Unix(0, n)
}

func (d *testDaemon) proxyAddr() string { return "127.0.0.1:" + strconv.Itoa(d.port) }

// Under constant load, the before-switch command runs while traffic is
// held: nothing fails, no request reaches v2 before the command finished,
// none that arrived after the hold reaches v1, and the command sees the
// release directory and the web process's environment.
func TestDeployHoldTrafficBeforeSwitchUnderLoad(t *testing.T) {
	d := startDaemon(t, holdWeb())
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	rec := recordReleases(d.proxyAddr(), 8, "/release")
	waitUntil(t, "v1 to answer", 10*time.Second, func() bool { return rec.count("v1") > 50 })
	dir := d.releasePath("v2")
	cmd := `date +%s%N > started; printf '%s|%s|%s' "$PWD" "$GREETING" "{{releaseId}}" > seen; sleep 1; date +%s%N > finished`
	r := d.cli("deploy", "--release-path", dir, "--release-id", "v2", "--hold-traffic", "--before-switch", cmd, "--max-pause", "20s")
	if r.code != 0 {
		t.Fatalf("deploy v2: %+v", r)
	}
	waitUntil(t, "v2 to answer", 10*time.Second, func() bool { return rec.count("v2") > 50 })
	samples := rec.stop()
	if f := failures(samples); len(f) > 0 {
		t.Fatalf("%d of %d requests failed: %v", len(f), len(samples), f[:min(len(f), 5)])
	}
	started, finished := nanoFile(t, filepath.Join(dir, "started")), nanoFile(t, filepath.Join(dir, "finished"))
	held := 0
	for _, s := range samples {
		switch s.release {
		case "v2":
			if s.recv.Before(finished) {
				t.Fatalf("v2 answered at %s, before the command finished at %s", s.recv.Format(time.StampMicro), finished.Format(time.StampMicro))
			}
			if s.sent.Before(started) {
				held++ // sent before the command, answered by v2 after it: held
			}
		case "v1":
			if s.sent.After(started) {
				t.Fatalf("a request sent at %s, after the command started at %s, reached v1", s.sent.Format(time.StampMicro), started.Format(time.StampMicro))
			}
		default:
			t.Fatalf("answer %q", s.release)
		}
	}
	if held == 0 {
		t.Fatal("no request was held over the command: the test proves nothing")
	}
	seen, _ := os.ReadFile(filepath.Join(dir, "seen"))
	if string(seen) != dir+"|hi-v2|v2" {
		t.Fatalf("the command saw %q", seen)
	}
	msgs := strings.Join(messages(d.events()), ",")
	if !strings.Contains(msgs, "traffic paused,traffic drained,before-switch command started,before-switch command finished,traffic switched,traffic resumed") {
		t.Fatalf("events %s", msgs)
	}
	t.Logf("%d requests, none failed; %d sent before the %.2f s command were held and answered by v2 after it", len(samples), held, finished.Sub(started).Seconds())
}

// holdFailure deploys v2 with a before-switch command that fails, under
// load, and checks the rollback: v1 serves throughout, v2 is stopped.
func holdFailure(t *testing.T, d *testDaemon, args ...string) (result, []sample) {
	t.Helper()
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	rec := recordReleases(d.proxyAddr(), 6, "/release")
	waitUntil(t, "v1 to answer", 10*time.Second, func() bool { return rec.count("v1") > 50 })
	r := d.cli(append([]string{"deploy", "--release-path", d.releasePath("v2"), "--release-id", "v2", "--hold-traffic"}, args...)...)
	before := rec.count("v1")
	waitUntil(t, "v1 to answer after the failed deploy", 10*time.Second, func() bool { return rec.count("v1") > before+50 })
	samples := rec.stop()
	if f := failures(samples); len(f) > 0 {
		t.Fatalf("%d of %d requests failed: %v", len(f), len(samples), f[:min(len(f), 5)])
	}
	for _, s := range samples {
		if s.release != "v1" {
			t.Fatalf("answer %q", s.release)
		}
	}
	s := d.status()
	if v2 := release(s, "v2"); s["activeReleaseId"] != "v1" || (v2 != nil && v2["state"] != "stopped") {
		t.Fatalf("after the failure: active %v, v2 %v", s["activeReleaseId"], v2)
	}
	stopped := 0
	for _, e := range d.events() {
		data, _ := e["data"].(map[string]any)
		if e["message"] == "process started" && data["releaseId"] == "v2" {
			if pid, _ := data["pid"].(float64); pid == 0 || alive(int(pid)) {
				t.Fatalf("v2's %v (pid %v) still runs", data["processId"], data["pid"])
			}
			stopped++
		}
	}
	if stopped == 0 {
		t.Fatal("v2 never started: the failure was not the command's")
	}
	if held, ok := s["traffic"]; ok {
		t.Fatalf("traffic still not serving normally: %v", held)
	}
	t.Logf("%d requests, all answered by v1", len(samples))
	return r, samples
}

func TestDeployHoldTrafficFailingCommandRollsBack(t *testing.T) {
	d := startDaemon(t, holdWeb())
	r, _ := holdFailure(t, d, "--before-switch", `echo migrating; i=1; while [ $i -le 45 ]; do echo "step $i"; i=$((i+1)); done; echo "boom: no such table" >&2; exit 3`)
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("deploy: %+v", r)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "Error: The --before-switch command failed: it ended with exit status 3 after ") ||
		!strings.HasSuffix(lines[0], "The deploy was called off: release v1 keeps serving (the requests held for the deploy go on to it) and release v2 was stopped.") {
		t.Fatalf("first line %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "before-switch command: exit status 3 after ") || !strings.Contains(lines[1], " ms; ") || !strings.HasSuffix(lines[1], "; last 40 lines of output:") {
		t.Fatalf("detail %q", lines[1])
	}
	if len(lines) != 42 || lines[2] != "    step 7" || lines[41] != "    boom: no such table" {
		t.Fatalf("%d lines: %q … %q", len(lines), lines[2], lines[len(lines)-1])
	}
	msgs := strings.Join(messages(d.events()), ",")
	if !strings.Contains(msgs, "before-switch command started,before-switch command failed,traffic resumed,hold aborted,deploy failed") {
		t.Fatalf("events %s", msgs)
	}
}

func TestDeployHoldTrafficCommandOverMaxPauseIsKilled(t *testing.T) {
	d := startDaemon(t, holdWeb())
	dir := d.releasePath("v2")
	r, samples := holdFailure(t, d, "--max-pause", "1500ms", "--before-switch", `echo $$ > shell; sleep 60 & echo $! > child; echo waiting; wait`)
	if r.code != 1 || !strings.Contains(r.stderr, "Error: The --before-switch command failed: it did not finish within --max-pause (1.5s) and was stopped (killed by signal SIGTERM). The deploy was called off: release v1 keeps serving") ||
		!strings.Contains(r.stderr, "\nbefore-switch command: killed by signal SIGTERM after ") || !strings.HasSuffix(r.stderr, " s (stopped at --max-pause); last 1 line of output:\n    waiting\n") {
		t.Fatalf("deploy: %+v", r)
	}
	// The requests held while the command ran went on to v1.
	held := 0
	for _, s := range samples {
		if s.recv.Sub(s.sent) > time.Second {
			held++
		}
	}
	if held == 0 {
		t.Fatal("no request was held over the command")
	}
	t.Logf("%d requests were held for over a second and answered by v1", held)
	for _, name := range []string{"shell", "child"} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
		if pid == 0 || alive(pid) {
			t.Fatalf("%s (pid %d) of the command is still alive", name, pid)
		}
	}
}

// Without --before-switch, the hold still keeps the two releases apart:
// no request is answered by v1 once v2 answered one, also with slow
// requests in flight at the hold (they finish before the switch). The
// times are the clients'; slackOverlap allows for the scheduling of the
// client goroutines, far below the second a slow request overlaps
// without the wait for requests in flight.
func TestDeployHoldTrafficNoOverlap(t *testing.T) {
	const slackOverlap = 50 * time.Millisecond
	d := startDaemon(t, holdWeb())
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	fast := recordReleases(d.proxyAddr(), 4, "/release")
	slow := recordReleases(d.proxyAddr(), 6, "/slow?ms=1000")
	waitUntil(t, "v1 to answer", 10*time.Second, func() bool { return slow.count("v1") > 6 })
	if r := d.cli("deploy", "--release-path", d.releasePath("v2"), "--release-id", "v2", "--hold-traffic"); r.code != 0 {
		t.Fatalf("deploy v2: %+v", r)
	}
	waitUntil(t, "v2 to answer", 10*time.Second, func() bool { return slow.count("v2") > 6 && fast.count("v2") > 50 })
	samples := append(fast.stop(), slow.stop()...)
	if f := failures(samples); len(f) > 0 {
		t.Fatalf("%d of %d requests failed: %v", len(f), len(samples), f[:min(len(f), 5)])
	}
	var firstV2, lastV1 time.Time
	for _, s := range samples {
		if s.release == "v2" && (firstV2.IsZero() || s.recv.Before(firstV2)) {
			firstV2 = s.recv
		}
		if s.release == "v1" && s.recv.After(lastV1) {
			lastV1 = s.recv
		}
	}
	if lastV1.After(firstV2.Add(slackOverlap)) {
		t.Fatalf("v1 answered at %s, %v after v2 had answered at %s", lastV1.Format(time.StampMicro), lastV1.Sub(firstV2), firstV2.Format(time.StampMicro))
	}
	events := d.events()
	var drained map[string]any
	for _, e := range events {
		if e["message"] == "traffic drained" {
			drained, _ = e["data"].(map[string]any)
		}
	}
	if drained == nil || drained["inFlight"] != float64(0) {
		t.Fatalf("traffic drained: %v", drained)
	}
	t.Logf("%d requests, none failed; the hold waited %v ms for requests in flight; v1's last answer came %v before v2's first", len(samples), drained["waitedMs"], firstV2.Sub(lastV1))
}

// A daemon that does not know traffic holds (the Node.js rollbridge, an
// older build) gets no deploy at all.
func TestDeployHoldTrafficRefusedByOldDaemon(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "old.sock")
	var mu sync.Mutex
	var requests []string
	fakeControl(t, sock, func(req string) (string, bool) {
		mu.Lock()
		requests = append(requests, strings.TrimSpace(req))
		mu.Unlock()
		if strings.Contains(req, `"command":"traffic"`) {
			return `{"error":"Unknown command: traffic","status":"error"}`, true
		}
		return `{"status":"success","activeReleaseId":"v2","previousReleaseId":null}`, true
	})
	config := filepath.Join(dir, "rollbridge.js")
	writeFile(t, config, fmt.Sprintf(`export default {control: {path: %q}, proxy: {port: 0}, processes: [{id: "web", policy: "proxied", command: "x", port: {from: 31000, to: 31010}}]};`, sock))
	r := rollbridge(t, dir, "deploy", "-c", config, "--release-path", dir, "--release-id", "v2", "--hold-traffic", "--before-switch", "true")
	if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "Error: The running daemon does not support --hold-traffic (it is the Node.js rollbridge or an older rollbridge); nothing was deployed. Replace it with this version") {
		t.Fatalf("deploy: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != 1 || requests[0] != `{"command":"traffic"}` {
		t.Fatalf("requests %q", requests)
	}
}

// Bad option values stop the command before anything is sent.
func TestDeployHoldTrafficOptionErrors(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "rb.sock")
	fakeControl(t, sock, func(req string) (string, bool) {
		t.Errorf("sent %s", req)
		return `{"status":"error","error":"no"}`, true
	})
	config := filepath.Join(dir, "rollbridge.js")
	writeFile(t, config, fmt.Sprintf(`export default {control: {path: %q}, proxy: {port: 0}, processes: [{id: "web", policy: "proxied", command: "x", port: {from: 31000, to: 31010}}]};`, sock))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--before-switch", "true"}, "error: option '--before-switch' requires --hold-traffic"},
		{[]string{"--max-pause", "5s"}, "error: option '--max-pause' requires --hold-traffic"},
		{[]string{"--hold-traffic", "--max-pause", "2h"}, "error: option '--max-pause' is out of range: \"2h\" (give a duration such as 30s, 2m or 1500ms, or whole seconds, from 1ms to 1h)"},
		{[]string{"--hold-traffic", "--max-pause", "0"}, "option '--max-pause' is out of range: \"0\""},
		{[]string{"--hold-traffic", "--max-pause", "1.5"}, "option '--max-pause' is not a duration: \"1.5\""},
		{[]string{"--hold-traffic", "--max-pause", "100us"}, "option '--max-pause' is out of range: \"100us\""},
		{[]string{"--hold-traffic", "--before-switch", " "}, "error: option '--before-switch <command>': the command must be a non-empty shell command"},
	} {
		r := rollbridge(t, dir, append([]string{"deploy", "-c", config, "--release-path", dir}, tc.args...)...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "error: ") || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %+v", tc.args, r)
		}
	}
}

// A request in flight that outlasts --max-pause calls the deploy off
// before the command runs: the slow request still gets v1's answer, the
// requests held meanwhile go to v1, v2 is stopped.
func TestDeployHoldTrafficInFlightOverMaxPause(t *testing.T) {
	d := startDaemon(t, holdWeb())
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	type answer struct {
		body string
		err  error
	}
	slowDone := make(chan answer, 1)
	c, err := dialKeepAlive(d.proxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The slow request ends when the test says so, after the deploy.
	release := filepath.Join(t.TempDir(), "release-slow")
	go func() {
		code, body, _, err := c.get("/slow?until=" + url.QueryEscape(release))
		if err == nil && code != 200 {
			err = fmt.Errorf("HTTP %d", code)
		}
		slowDone <- answer{body, err}
	}()
	waitUntil(t, "the slow request to be in flight", 10*time.Second, func() bool {
		var open float64
		for _, r := range d.status()["releases"].([]any) {
			if m := r.(map[string]any); m["releaseId"] == "v1" {
				open, _ = m["connections"].(map[string]any)["http"].(float64)
			}
		}
		return open > 0
	})
	dir := d.releasePath("v2")
	r := d.cli("deploy", "--release-path", dir, "--release-id", "v2", "--hold-traffic", "--max-pause", "1s", "--before-switch", "touch ran")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: 1 request was still in flight when --max-pause (1s) ran out, so the switch could not happen without overlap; the deploy was called off before the switch and before the --before-switch command ran: release v1 keeps serving") {
		t.Fatalf("deploy: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Fatal("the command ran")
	}
	if code, body := d.get("/release"); code != 200 || body != "v1" {
		t.Fatalf("after: %d %q", code, body)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if a := <-slowDone; a.err != nil || a.body != "v1" {
		t.Fatalf("the slow request: %q %v", a.body, a.err)
	}
	if s := d.status(); s["activeReleaseId"] != "v1" || s["traffic"] != nil {
		t.Fatalf("after: active %v, traffic %v", s["activeReleaseId"], s["traffic"])
	}
}

// A web process that dies while traffic is held (here the command kills
// it) does not get the held requests: the deploy is called off, v1 keeps
// serving.
func TestDeployHoldTrafficWebDiesDuringHold(t *testing.T) {
	from, to := privatePorts()
	d := startDaemon(t, fmt.Sprintf(`processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen -pid-file {{releasePath}}/web.pid", port: {from: %d, to: %d}, restartDelayMs: 60000, health: {intervalMs: 20}}]`, from, to))
	r, _ := holdFailure(t, d, "--before-switch", `kill -9 $(head -n 1 web.pid); while kill -0 $(head -n 1 web.pid) 2>/dev/null; do sleep 0.01; done; echo killed`)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: web of release v2 exited while traffic was held (\"rollbridge logs --process web\" shows why), so the deploy was called off before the switch: release v1 keeps serving") {
		t.Fatalf("deploy: %+v", r)
	}
}
