package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
)

// These tests drive pause, resume and maintenance with raw control
// requests, as any client of the control protocol does.

// trafficCtl sends one control request to d and returns the decoded
// success reply.
func (d *testDaemon) trafficCtl(command string, fields ...jsconfig.Field) map[string]any {
	d.t.Helper()
	raw, err := control.Call(control.Endpoint{Path: d.sock}, control.SortedRequest(command, fields...), time.Minute)
	if err != nil {
		d.t.Fatalf("%s: %v", command, err)
	}
	var reply map[string]any
	if err := json.Unmarshal(raw, &reply); err != nil || reply["status"] != "success" {
		d.t.Fatalf("%s: %s", command, raw)
	}
	return reply
}

// trafficNow is d's traffic object (the traffic command's reply).
func (d *testDaemon) trafficNow() map[string]any {
	d.t.Helper()
	return d.trafficCtl("traffic")["traffic"].(map[string]any)
}

// heldAt reports how many requests d holds.
func (d *testDaemon) heldAt() int {
	d.t.Helper()
	return int(d.trafficNow()["heldRequests"].(float64))
}

// objectIn returns m[key] as an object, failing the test when it is not
// one.
func objectIn(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	o, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("%s is %v, not an object, in %v", key, m[key], m)
	}
	return o
}

// webInWindow is the fixture web process on a port window of its own.
func webInWindow() string {
	from, to := randomPortWindow(22000, 22999, 20)
	return fmt.Sprintf(`{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: %d, to: %d}, health: {intervalMs: 20}}`, from, to)
}

// startNewConnTraffic runs conns clients that each open a new connection
// for every GET path, every interval; a request that is not answered 200
// within 30 s counts as failed.
func startNewConnTraffic(addr, path string, conns int, interval time.Duration) *traffic {
	tr := &traffic{done: make(chan struct{})}
	for range conns {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-tr.done:
					return
				case <-tick.C:
				}
				c, err := dialKeepAlive(addr)
				if err == nil {
					var code int
					code, _, _, err = c.get(path)
					c.Close()
					if err == nil && code != 200 {
						err = fmt.Errorf("HTTP %d", code)
					}
				}
				tr.record(err)
			}
		}()
	}
	return tr
}

// rawAnswer is one answer read off a raw connection.
type rawAnswer struct {
	code       int
	retryAfter string
	body       string
	err        error
}

// sendHeld sends GET path on a new connection and delivers the answer,
// whenever it comes (within a minute).
func sendHeld(addr, path string) <-chan rawAnswer {
	ch := make(chan rawAnswer, 1)
	go func() {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			ch <- rawAnswer{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: itest\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			ch <- rawAnswer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- rawAnswer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b), err: err}
	}()
	return ch
}

// answerOf waits for the answer on ch.
func answerOf(t *testing.T, what string, ch <-chan rawAnswer) rawAnswer {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("%s: %v", what, a.err)
		}
		return a
	case <-time.After(time.Minute):
		t.Fatalf("%s: no answer", what)
	}
	return rawAnswer{}
}

// eventData returns the data of the events with message msg in a
// daemon's log (its stdout).
func eventData(log, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(log, "\n") {
		var e struct {
			Message string
			Data    map[string]any
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Message == msg {
			out = append(out, e.Data)
		}
	}
	return out
}

// A pause survives a takeover: the requests the owner holds at the handoff
// (on keep-alive and on new connections) go on to the successor, which
// holds them too, and are answered by the new release after resume there,
// none failed, even though the owner's drain timeout (500 ms) is long past
// by then: the owner keeps them open until the pause's deadline.
func TestPauseSurvivesATakeover(t *testing.T) {
	owner := startDaemon(t, `proxy: {port: 0, drainTimeoutMs: 500, forceStopTimeoutMs: 5000}, processes: [`+webInWindow()+`]`)
	owner.deploy("v1")
	addr := "127.0.0.1:" + strconv.Itoa(owner.port)
	keep := startKeepAliveTraffic(addr, "/release", 8, 20*time.Millisecond)
	fresh := startNewConnTraffic(addr, "/release", 8, 20*time.Millisecond)
	stopped := false
	stop := func() []trafficFailure {
		stopped = true
		return append(keep.stop(), fresh.stop()...)
	}
	defer func() {
		if !stopped {
			stop()
		}
	}()
	keep.waitFor(t, "keep-alive traffic to flow", 50)
	fresh.waitFor(t, "new-connection traffic to flow", 50)

	reply := owner.trafficCtl("pause", jsconfig.Field{Key: "maxPauseMs", Value: 120000}, jsconfig.Field{Key: "drainTimeoutMs", Value: 10000})
	if reply["inFlight"] != float64(0) || reply["traffic"].(map[string]any)["state"] != "paused" {
		t.Fatalf("pause: %v", reply)
	}
	// Every client waits with one request in the owner.
	waitUntil(t, "the owner to hold all 16 clients", 10*time.Second, func() bool { return owner.heldAt() == 16 })
	paused := owner.trafficNow()["paused"].(map[string]any)
	okBefore := keep.ok.Load() + fresh.ok.Load()

	cand := owner.candidate("v2")
	cand.start()
	t.Cleanup(cand.cleanup)
	owner.handedOver = true
	cand.port = owner.port
	handedOver := time.Now()
	// The successor is paused with the owner's deadline, and the owner's
	// held requests arrive there.
	waitUntil(t, "the successor to hold the 16 requests", 10*time.Second, func() bool { return cand.heldAt() == 16 })
	tr := cand.trafficNow()
	if tr["state"] != "paused" || tr["paused"].(map[string]any)["expiresAt"] != paused["expiresAt"] || tr["paused"].(map[string]any)["pausedAt"] != paused["pausedAt"] {
		t.Fatalf("successor traffic %v, owner's pause %v", tr, paused)
	}
	if got := eventData(cand.stdout.String(), "traffic state restored"); len(got) != 1 || got[0]["source"] != "takeover" || got[0]["state"] != "paused" {
		t.Fatalf("restored events %v", got)
	}
	if got := eventData(owner.stdout.String(), "held requests passed on"); len(got) != 1 || got[0]["requests"] != float64(16) {
		t.Fatalf("passed-on events %v", got)
	}
	// Well past the owner's drain timeout, nothing was answered yet and
	// the owner still keeps the connections.
	waitUntil(t, "three drain timeouts to pass", 10*time.Second, func() bool { return time.Since(handedOver) > 1500*time.Millisecond })
	select {
	case <-owner.exited:
		t.Fatalf("the owner exited with requests held: %v\n%s", owner.exitErr, owner.stdout.String())
	default:
	}
	if n := keep.ok.Load() + fresh.ok.Load(); n != okBefore || len(keep.failures)+len(fresh.failures) != 0 {
		t.Fatalf("answers while paused: %d ok (was %d), failures %v %v", n, okBefore, keep.failures, fresh.failures)
	}

	if r := cand.trafficCtl("resume"); r["released"] != float64(16) || r["wasPaused"] != true || r["traffic"].(map[string]any)["state"] != "serving" {
		t.Fatalf("resume: %v", r)
	}
	keep.waitFor(t, "keep-alive traffic after resume", 100)
	fresh.waitFor(t, "new-connection traffic after resume", 100)
	if _, body := cand.get("/release"); body != "v2" {
		t.Fatalf("served %q", body)
	}
	failures := stop()
	t.Logf("%d requests, %d failed, 16 held across the takeover", keep.ok.Load()+fresh.ok.Load()+int64(len(failures)), len(failures))
	if len(failures) != 0 {
		t.Fatalf("%d requests failed; first: %v", len(failures), failures[0].err)
	}
	select {
	case <-owner.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the owner did not exit after its requests were answered")
	}
	if owner.exitErr != nil {
		t.Fatalf("owner exit: %v\n%s", owner.exitErr, owner.stderr.String())
	}
}

// Maintenance survives a takeover: the successor answers with the same
// message and Retry-After from its first request on.
func TestMaintenanceSurvivesATakeover(t *testing.T) {
	owner := startDaemon(t, `processes: [`+webInWindow()+`]`)
	owner.deploy("v1")
	owner.trafficCtl("maintenance", jsconfig.Field{Key: "enabled", Value: true}, jsconfig.Field{Key: "message", Value: "Back at 12:30 UTC"}, jsconfig.Field{Key: "retryAfterSeconds", Value: 42})
	cand := owner.candidate("v2")
	cand.start()
	t.Cleanup(cand.cleanup)
	owner.handedOver = true
	cand.port = owner.port
	tr := cand.trafficNow()
	if tr["state"] != "maintenance" || tr["maintenance"].(map[string]any)["message"] != "Back at 12:30 UTC" {
		t.Fatalf("successor traffic %v", tr)
	}
	a := answerOf(t, "a request in maintenance", sendHeld("127.0.0.1:"+strconv.Itoa(cand.port), "/release"))
	if a.code != 503 || a.retryAfter != "42" || a.body != "Back at 12:30 UTC\n" {
		t.Fatalf("answer %+v", a)
	}
	cand.trafficCtl("maintenance", jsconfig.Field{Key: "enabled", Value: false})
	if _, body := cand.get("/release"); body != "v2" {
		t.Fatalf("served %q after maintenance", body)
	}
}

// persistentDaemon is a daemon with a state file, for restarts.
func persistentDaemon(t *testing.T) (*testDaemon, string) {
	t.Helper()
	d := newTestDaemon(t, "")
	state := filepath.Join(d.dir, "state", "rollbridge.json")
	os.Mkdir(filepath.Dir(state), 0o755)
	d.writeConfig(`statePath: ` + strconv.Quote(state) + `, processes: [` + webInWindow() + `]`)
	return d, state
}

// bootstrapArgs makes d's next start a bootstrap of release id.
func (d *testDaemon) bootstrapArgs(id string) {
	d.args = []string{"--release-path", d.releasePath(id), "--release-id", id, "--revision", id}
}

// A pause survives a planned restart: at the shutdown a held request is
// answered 503 with Retry-After and the state file keeps the pause; the
// next daemon (a bootstrap) holds from its first request with the same
// deadline, until resume. A pause whose deadline passes while no daemon
// runs comes back expired: 503 with Retry-After at once, until resume.
func TestPauseSurvivesARestartWithBootstrap(t *testing.T) {
	d, state := persistentDaemon(t)
	d.start()
	t.Cleanup(d.cleanup)
	d.deploy("v1")
	d.trafficCtl("pause", jsconfig.Field{Key: "maxPauseMs", Value: 600000})
	paused := d.trafficNow()["paused"].(map[string]any)
	held := sendHeld("127.0.0.1:"+strconv.Itoa(d.port), "/release")
	waitUntil(t, "the request to be held", 10*time.Second, func() bool { return d.heldAt() == 1 })
	d.shutdown()
	if a := answerOf(t, "the request held at shutdown", held); a.code != 503 || a.retryAfter != "1" {
		t.Fatalf("held request at shutdown: %+v", a)
	}
	kept := objectIn(t, readStateFile(t, state), "traffic")
	if kept["state"] != "paused" || kept["paused"].(map[string]any)["pausedAt"] != paused["pausedAt"] {
		t.Fatalf("state file traffic after shutdown: %v", kept)
	}

	d.bootstrapArgs("b1")
	d.start()
	tr := objectIn(t, d.status(), "traffic")
	if tr["state"] != "paused" || tr["paused"].(map[string]any)["expiresAt"] != paused["expiresAt"] {
		t.Fatalf("restored traffic %v, was %v", tr, paused)
	}
	if got := eventData(d.stdout.String(), "traffic state restored"); len(got) != 1 || got[0]["source"] != "stateFile" || got[0]["state"] != "paused" {
		t.Fatalf("restored events %v", got)
	}
	// Restored before the proxy listened and before b1 got traffic.
	order := strings.Join(messagesInLog(d.stdout.String()), ",")
	if !strings.HasPrefix(order, "traffic state restored,proxy listening,deploy starting") {
		t.Fatalf("log order: %s", order)
	}
	held = sendHeld("127.0.0.1:"+strconv.Itoa(d.port), "/release")
	waitUntil(t, "the request to be held after the restart", 10*time.Second, func() bool { return d.heldAt() == 1 })
	if r := d.trafficCtl("resume"); r["released"] != float64(1) {
		t.Fatalf("resume: %v", r)
	}
	if a := answerOf(t, "the request held after the restart", held); a.code != 200 || a.body != "b1" {
		t.Fatalf("answer after resume: %+v", a)
	}

	// Expired while down.
	d.trafficCtl("pause", jsconfig.Field{Key: "maxPauseMs", Value: 1000})
	deadline, err := time.Parse(time.RFC3339Nano, d.trafficNow()["paused"].(map[string]any)["expiresAt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	d.stopDaemonWhilePaused()
	waitUntil(t, "the pause's deadline to pass", 10*time.Second, func() bool { return time.Now().After(deadline) })
	d.bootstrapArgs("b2")
	d.start()
	if tr := d.trafficNow(); tr["state"] != "pause-expired" || tr["paused"].(map[string]any)["expired"] != true {
		t.Fatalf("traffic after an expiry while down: %v", tr)
	}
	if a := answerOf(t, "a request after the expiry", sendHeld("127.0.0.1:"+strconv.Itoa(d.port), "/release")); a.code != 503 || a.retryAfter != "10" {
		t.Fatalf("answer of an expired pause: %+v", a)
	}
	d.trafficCtl("resume")
	if _, body := d.get("/release"); body != "b2" {
		t.Fatalf("served %q after resume", body)
	}
	d.shutdown()
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the state file outlived a shutdown that serves normally: %v", err)
	}
}

// stopDaemonWhilePaused shuts d down and waits for it to exit 0.
func (d *testDaemon) stopDaemonWhilePaused() {
	d.t.Helper()
	d.status()
	d.stopDaemon()
	if d.exitErr != nil {
		d.t.Fatalf("daemon exit: %v\n%s", d.exitErr, d.stderr.String())
	}
}

// SIGKILL while paused: the next daemon restores the pause from the state
// file the killed one wrote when it paused, also after recover --force
// (the documented clean-up after a crash), which stops the orphans and
// keeps only the pause in the file.
func TestPauseSurvivesADaemonCrash(t *testing.T) {
	d, state := persistentDaemon(t)
	d.start()
	t.Cleanup(d.cleanup)
	d.deploy("v1")
	pauseAndCrash := func() map[string]any {
		d.trafficCtl("pause", jsconfig.Field{Key: "maxPauseMs", Value: 600000})
		paused := d.trafficNow()["paused"].(map[string]any)
		waitUntil(t, "the state file to record the pause", 10*time.Second, func() bool {
			data, _ := os.ReadFile(state)
			return strings.Contains(string(data), `"pausedAt": "`+paused["pausedAt"].(string)+`"`)
		})
		d.status()
		d.crashDaemon()
		return paused
	}
	paused := pauseAndCrash()
	d.start()
	tr := objectIn(t, d.status(), "traffic")
	if tr["state"] != "paused" || tr["paused"].(map[string]any)["expiresAt"] != paused["expiresAt"] {
		t.Fatalf("traffic after the crash %v, was %v", tr, paused)
	}
	d.deploy("v2")
	held := sendHeld("127.0.0.1:"+strconv.Itoa(d.port), "/release")
	waitUntil(t, "the request to be held", 10*time.Second, func() bool { return d.heldAt() == 1 })
	d.trafficCtl("resume")
	if a := answerOf(t, "the held request", held); a.code != 200 || a.body != "v2" {
		t.Fatalf("answer after resume: %+v", a)
	}

	// Again, and this time recover --force before the next start: the
	// killed daemon's processes (v2's; v1's were re-adopted after the
	// first crash and stopped by the deploy of v2) stop, the pause stays
	// recorded.
	paused = pauseAndCrash()
	r := d.cli("recover", "--force")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Stopped 1 orphaned process:\n") ||
		!strings.HasSuffix(r.stdout, "The state file keeps the recorded traffic state (paused) for the next daemon; run \"rollbridge resume\" (or \"rollbridge maintenance off\") on it when the application may serve.\n") {
		t.Fatalf("recover --force: %+v", r)
	}
	kept := readStateFile(t, state)
	if len(kept["orphans"].([]any)) != 0 || len(kept["releases"].([]any)) != 0 || objectIn(t, kept, "traffic")["paused"].(map[string]any)["pausedAt"] != paused["pausedAt"] {
		t.Fatalf("state file after recover: %v", kept)
	}
	d.start()
	s := d.status()
	if tr := objectIn(t, s, "traffic"); tr["state"] != "paused" || tr["paused"].(map[string]any)["expiresAt"] != paused["expiresAt"] || len(s["orphans"].([]any)) != 0 {
		t.Fatalf("status after recover and a start: %v", s)
	}
	d.trafficCtl("resume")
	d.shutdown()
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("the state file outlived a shutdown that serves normally: %v", err)
	}
}

// A traffic member this version cannot read is ignored with an event: the
// daemon starts and serves normally.
func TestMalformedTrafficStateIsIgnored(t *testing.T) {
	d, state := persistentDaemon(t)
	doc := `{"activeReleaseId":null,"orphans":[],"releases":[],"services":[],"singletons":[],"traffic":{"paused":{"expired":false,"maxPauseMs":-5,"pausedAt":"2026-01-01T00:00:00.000Z"}}}`
	if err := os.WriteFile(state, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	t.Cleanup(d.cleanup)
	got := eventData(d.stdout.String(), "traffic state ignored")
	if len(got) != 1 || got[0]["error"] != "traffic.paused.maxPauseMs is not a whole number from 1 to 31536000000" || got[0]["source"] != "stateFile" {
		t.Fatalf("ignored events %v\n%s", got, d.stdout.String())
	}
	if _, ok := d.status()["traffic"]; ok {
		t.Fatal("status shows a traffic state")
	}
	d.deploy("v1")
	if code, body := d.get("/release"); code != 200 || body != "v1" {
		t.Fatalf("served %d %q", code, body)
	}
}
