package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// failingWeb is a config whose web process runs command (FIXTURE may be
// used) with a 60 s health timeout: a deploy that ends well before that
// failed fast. Its ports are a private window (privatePorts): a web
// process that never listens leaves its port free, and another test's
// app that binds it would answer this health check. restart is the
// process's restart block; "" restarts it once after 100 ms and the next
// time only after 60 s (backoff), so a deploy that gives up at the second
// exit reports exactly one restart however late it gets to it: with a
// constant 100 ms, a daemon slowed down by load could restart the process
// a second time first.
func failingWeb(command, restart string) string {
	from, to := privatePorts()
	if restart == "" {
		restart = "{backoffFactor: 600}"
	}
	return fmt.Sprintf(`processes: [{id: "worker", command: "exec FIXTURE"}, {id: "web", policy: "proxied", command: %q, port: {from: %d, to: %d}, restartDelayMs: 100, restart: %s, health: {intervalMs: 20, timeoutMs: 60000}}]`, command, from, to, restart)
}

var healthFailed = regexp.MustCompile(`^Error: Health check failed for http://127\.0\.0\.1:\d+/\w+: (.*)\n`)

// A web process that exits at start fails the deploy at once, long before
// the health timeout, and the error says why below the unchanged first
// line; the release is cleaned up and the active release keeps serving
// every request.
func TestFailedDeployWebExitsAtStart(t *testing.T) {
	d := startDaemon(t, failingWeb("exec FIXTURE -listen", ""))
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	d.writeConfig(failingWeb(`echo "missing DATABASE_URL" >&2; exit 3`, ""))
	tr := startTraffic(d.url(""), mixedClients(4, "/release")...)
	tr.waitFor(t, "traffic before the deploy", 20)

	began := time.Now()
	r := d.deploy("v2")
	took := time.Since(began)
	tr.waitFor(t, "traffic after the deploy", 20)
	if failures := tr.stop(); len(failures) > 0 {
		t.Errorf("%d requests failed during the failed deploy, first: %v", len(failures), failures[0])
	}
	t.Logf("the failed deploy took %v (health timeout 60 s)", took)
	if took > 20*time.Second {
		t.Errorf("the deploy took %v: it waited for the health timeout instead of failing fast", took)
	}
	m := healthFailed.FindStringSubmatch(r.stderr)
	if r.code != 1 || m == nil || m[1] != "connection refused" {
		t.Fatalf("deploy v2: %+v", r)
	}
	want := "web exited 2 times (code 3), restarted 1 time; last output: missing DATABASE_URL (×2)\n"
	if rest := r.stderr[len(m[0]):]; rest != want {
		t.Errorf("detail:\n%q\nwant\n%q", rest, want)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}

	s := d.status()
	if s["activeReleaseId"] != "v1" {
		t.Errorf("active release %v, want v1", s["activeReleaseId"])
	}
	if v2 := release(s, "v2"); v2 != nil && v2["state"] != "stopped" {
		t.Errorf("v2 was not cleaned up: %v", v2)
	}
	if code, body := d.get("/release"); code != 200 || !strings.Contains(body, "v1") {
		t.Errorf("after the failed deploy: %d %q", code, body)
	}
	// The event keeps its error and gains the processes.
	var failed map[string]any
	for _, e := range d.events() {
		if e["message"] == "deploy failed" {
			failed = e["data"].(map[string]any)
		}
	}
	if failed == nil || failed["error"] != m[0][len("Error: "):len(m[0])-1] || failed["releaseId"] != "v2" {
		t.Fatalf("deploy failed event: %v", failed)
	}
	// The reply on the wire: "error" as before, "processes" added (in
	// start order), keys sorted, so a client that reads only "error" sees
	// no change.
	rel := filepath.Join(d.dir, "releases", "v3")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	reply := rawControl(t, d.sock, fmt.Sprintf(`{"command":"deploy","releaseId":"v3","releasePath":%q}`, rel))
	if !regexp.MustCompile(`^\{"error":"Health check failed for http://127\.0\.0\.1:\d+/ping: connection refused","processes":\[\{"exitCauses":\[\],"exits":0,"failing":false,"id":"worker","lastOutput":\[\],"restartLimitReached":false,"restarts":0,"state":"running"\},` +
		`\{"exitCauses":\[\{"code":3,"count":2\}\],"exits":2,"failing":true,"id":"web","lastOutput":\[\{"at":"[^"]+","line":"missing DATABASE_URL","stream":"stderr"\},.*\],"restartLimitReached":false,"restarts":1,"state":"failed"\}\],"status":"error"\}\n$`).MatchString(reply) {
		t.Errorf("error reply: %s", reply)
	}
	procs, _ := failed["processes"].([]any)
	var web map[string]any
	for _, p := range procs {
		if p.(map[string]any)["id"] == "web" {
			web = p.(map[string]any)
		}
	}
	if web == nil || web["exits"] != float64(2) || web["failing"] != true || web["restarts"] != float64(1) ||
		fmt.Sprint(web["exitCauses"]) != "[map[code:3 count:2]]" || len(web["lastOutput"].([]any)) != 2 {
		t.Errorf("processes of the event: %v", procs)
	}
}

// A health check that times out while the web process runs, after it
// crashed and restarted once: one exit is not enough to give up, so the
// whole window passes, and the error names the crash and the output.
func TestFailedDeployHealthTimeoutAfterRestart(t *testing.T) {
	from, to := privatePorts()
	d := startDaemon(t, fmt.Sprintf(`processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: %d, to: %d}}]`, from, to))
	mark := filepath.Join(t.TempDir(), "started")
	// The first start fails; the second runs and answers 503 (its ready
	// file never appears).
	cmd := fmt.Sprintf(`if [ -e %[1]s ]; then echo "waiting for the cache" >&2; exec FIXTURE -listen -ready-file %[1]s.never; fi; touch %[1]s; echo "cannot open /srv/cache" >&2; exit 1`, mark)
	d.writeConfig(fmt.Sprintf(`processes: [{id: "web", policy: "proxied", command: %q, port: {from: %d, to: %d}, restartDelayMs: 100, health: {path: "/ready", intervalMs: 20, timeoutMs: 3000}}]`, cmd, from, to))
	// The window holds the first exit, the restart and the second copy's
	// listening (or the reason is "connection refused"): 3 s, for a
	// loaded machine.
	began := time.Now()
	r := d.deploy("v1")
	if took := time.Since(began); took < 3*time.Second {
		t.Errorf("the deploy ended after %v, before the health window of 3 s: one exit must not fail it", took)
	}
	m := healthFailed.FindStringSubmatch(r.stderr)
	if r.code != 1 || m == nil || m[1] != "HTTP 503" {
		t.Fatalf("deploy: %+v", r)
	}
	want := "web exited 1 time (code 1), restarted 1 time; last output:\n    cannot open /srv/cache\n    waiting for the cache\n"
	if rest := r.stderr[len(m[0]):]; rest != want {
		t.Errorf("detail:\n%q\nwant\n%q", rest, want)
	}
}

// Signals are named; a restart limit that gives up fails the deploy at
// the first exit; control characters of the output never reach the
// terminal raw, and an absurdly long line is cut.
func TestFailedDeploySignalsLimitAndUnsafeOutput(t *testing.T) {
	d := startDaemon(t, failingWeb("exec FIXTURE -listen", ""))
	long := strings.Repeat("x", 5000)
	for i, c := range []struct {
		command, restart, reason, detail string
	}{
		{`kill -KILL $$`, "", "connection refused", "web exited 2 times (signal SIGKILL), restarted 1 time; no output\n"},
		{`echo segfault >&2; kill -SEGV $$`, "", "connection refused", "web exited 2 times (signal SIGSEGV), restarted 1 time; last output: segfault (×2)\n"},
		{`echo "no config" >&2; exit 3`, "{maxRestarts: 0}", "connection refused", "web exited 1 time (code 3), restart limit reached; last output: no config\n"},
		{`printf '\033]0;pwned\007\033[2Jred\n' >&2; exit 4`, "{maxRestarts: 0}", "connection refused", `web exited 1 time (code 4), restart limit reached; last output: "\x1b]0;pwned\a\x1b[2Jred"` + "\n"},
		{`echo ` + long + ` >&2; exit 5`, "{maxRestarts: 0}", "connection refused", "web exited 1 time (code 5), restart limit reached; last output: " + long[:200] + "…\n"},
	} {
		d.writeConfig(failingWeb(c.command, c.restart))
		began := time.Now()
		r := d.deploy(fmt.Sprintf("s%d", i))
		if took := time.Since(began); took > 20*time.Second {
			t.Errorf("case %d: the deploy took %v instead of failing fast", i, took)
		}
		m := healthFailed.FindStringSubmatch(r.stderr)
		if r.code != 1 || m == nil || m[1] != c.reason {
			t.Errorf("case %d: %+v", i, r)
			continue
		}
		if rest := r.stderr[len(m[0]):]; rest != c.detail {
			t.Errorf("case %d: detail\n%q\nwant\n%q", i, rest, c.detail)
		}
	}
}
