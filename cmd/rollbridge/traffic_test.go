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
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
)

// startTrafficApp starts a daemon (with extra daemon options) whose web
// process is the fixture on a random port window, and deploys v1.
func startTrafficApp(t *testing.T, args ...string) *testDaemon {
	t.Helper()
	from, to := randomPortWindow(20000, 20999, 20)
	d := newTestDaemon(t, fmt.Sprintf(`processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: %d, to: %d}, health: {intervalMs: 20}}]`, from, to))
	d.args = args
	d.start()
	t.Cleanup(d.cleanup)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	return d
}

// trafficOf is the "traffic" object of a status, nil when it has none.
func (d *testDaemon) trafficOf() map[string]any {
	d.t.Helper()
	t, _ := d.status()["traffic"].(map[string]any)
	return t
}

// heldRequests is the number of held requests status reports.
func (d *testDaemon) heldRequests() int {
	if t := d.trafficOf(); t != nil {
		return int(t["heldRequests"].(float64))
	}
	return 0
}

// jsonReply parses a command's JSON output.
func jsonReply(t *testing.T, r result) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("not JSON: %v\n%+v", err, r)
	}
	return m
}

// answer is a response read by a raw keep-alive client.
type answer struct {
	code int
	body string
	at   time.Time
	err  error
}

// getAsync sends GET path on c and delivers the answer on the channel.
func getAsync(c *keepAliveConn, path string) chan answer {
	ch := make(chan answer, 1)
	go func() {
		code, body, _, err := c.get(path)
		ch <- answer{code, body, time.Now(), err}
	}()
	return ch
}

// A pause holds the requests that arrive during it: none is answered
// before resume, none is lost, each keep-alive connection gets its
// answers in order and goes on working, a deploy during the pause
// switches as usual and the held requests go to the new release. status,
// metrics, logs and events answer during the pause.
func TestPauseHoldsRequestsUntilResume(t *testing.T) {
	metricsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	d := startTrafficApp(t, "--metrics-address", metricsAddr)
	const conns = 6
	clients := make([]*keepAliveConn, conns)
	for i := range clients {
		c, err := dialKeepAlive("127.0.0.1:" + strconv.Itoa(d.port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if code, body, _, err := c.get("/release"); err != nil || code != 200 || body != "v1" {
			t.Fatalf("before the pause: %d %q %v", code, body, err)
		}
		clients[i] = c
	}

	r := d.cli("pause", "--max-pause", "2m", "--json")
	if r.code != 0 {
		t.Fatalf("pause: %+v", r)
	}
	reply := jsonReply(t, r)
	tr := reply["traffic"].(map[string]any)
	if reply["status"] != "success" || reply["inFlight"] != 0.0 || tr["state"] != "paused" || tr["paused"].(map[string]any)["maxPauseMs"] != 120000.0 {
		t.Fatalf("pause reply: %s", r.stdout)
	}

	pending := make([]chan answer, conns)
	for i, c := range clients {
		pending[i] = getAsync(c, "/release")
	}
	waitUntil(t, "every request held", 10*time.Second, func() bool { return d.heldRequests() == conns })

	// Everything else answers during the pause.
	if got := d.trafficOf(); got["state"] != "paused" || got["heldBytes"].(float64) <= 0 {
		t.Fatalf("status traffic during the pause: %v", got)
	}
	families := scrape(t, metricsAddr)
	for name, want := range map[string]float64{"rollbridge_traffic_paused": 1, "rollbridge_traffic_maintenance": 0, "rollbridge_held_requests": conns} {
		if v, ok := value(t, families, name, nil); !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", name, v, ok, want)
		}
	}
	if v, _ := value(t, families, "rollbridge_held_requests_total", nil); v < conns {
		t.Errorf("rollbridge_held_requests_total = %v, want >= %d", v, conns)
	}
	if r := d.cli("logs", "--json"); r.code != 0 {
		t.Fatalf("logs during the pause: %+v", r)
	}
	if msgs := strings.Join(messages(d.events()), "|"); !strings.Contains(msgs, "traffic paused|traffic drained") {
		t.Fatalf("events during the pause: %s", msgs)
	}
	screen, code := d.cliOnTerminal([]string{"NO_COLOR=1"}, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^  traffic paused since \d\d:\d\d:\d\d \(\d+s\), 6 held requests; expires at \d\d:\d\d:\d\d \(in 1m \d+s\)$`).MatchString(screen) {
		t.Fatalf("status on a terminal during the pause:\n%s", screen)
	}
	// A deploy during the pause switches as usual.
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy during the pause: %+v", r)
	}
	for i, ch := range pending {
		select {
		case a := <-ch:
			t.Fatalf("request %d answered during the pause: %+v", i, a)
		default:
		}
	}

	resumed := time.Now()
	r = d.cli("resume", "--json")
	if r.code != 0 {
		t.Fatalf("resume: %+v", r)
	}
	reply = jsonReply(t, r)
	if reply["released"] != float64(conns) || reply["wasPaused"] != true || reply["activeReleaseId"] != "v2" || reply["traffic"].(map[string]any)["state"] != "serving" || reply["pausedMs"].(float64) <= 0 {
		t.Fatalf("resume reply: %s", r.stdout)
	}
	for i, ch := range pending {
		a := <-ch
		if a.err != nil || a.code != 200 || a.body != "v2" || a.at.Before(resumed) {
			t.Fatalf("held request %d: %+v (resumed at %v)", i, a, resumed)
		}
		// The same connection goes on working, its answers in order.
		for _, p := range []string{"/slow?ms=30", "/release"} {
			if code, body, _, err := clients[i].get(p); err != nil || code != 200 || body != "v2" {
				t.Fatalf("connection %d after resume, %s: %d %q %v", i, p, code, body, err)
			}
		}
	}
	if d.trafficOf() != nil {
		t.Fatal("status still has traffic after resume")
	}
	families = scrape(t, metricsAddr)
	if v, _ := value(t, families, "rollbridge_traffic_paused", nil); v != 0 {
		t.Errorf("rollbridge_traffic_paused after resume = %v", v)
	}
	ev := d.events()
	last := ev[len(ev)-1]
	for _, e := range ev {
		if e["message"] == "traffic resumed" {
			last = e
		}
	}
	if data := last["data"].(map[string]any); last["message"] != "traffic resumed" || data["releasedRequests"] != float64(conns) {
		t.Fatalf("traffic resumed event: %v", last)
	}

	// A second resume changes nothing and says so.
	out, code := d.cliOnTerminal(nil, "resume")
	if code != 0 || out != "Traffic was not paused; nothing changed.\n" {
		t.Fatalf("resume when not paused: %d %q", code, out)
	}
}

// A WebSocket handshake that arrives during a pause is held (no answer,
// counted in status), and on resume it reaches the release active then:
// here v2, deployed during the pause. The tunnel then works both ways.
func TestPausedWebSocketIsServedAfterResume(t *testing.T) {
	d := startTrafficApp(t)
	if r := d.cli("pause", "--max-pause", "2m"); r.code != 0 {
		t.Fatalf("pause: %+v", r)
	}
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(d.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	waitUntil(t, "the handshake to be held", 10*time.Second, func() bool { return d.heldRequests() == 1 })
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy during the pause: %+v", r)
	}
	// Still held after the deploy: nothing has been answered.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the held handshake was answered before resume: %d %v", n, err)
	}
	if r := d.cli("resume", "--json"); r.code != 0 || jsonReply(t, r)["released"] != 1.0 {
		t.Fatalf("resume: %+v", r)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		t.Fatalf("handshake after resume: %q %v", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	if hello, err := br.ReadString('\n'); err != nil || hello != "hello v2\n" {
		t.Fatalf("greeting %q %v: the handshake did not reach the release active at resume", hello, err)
	}
	io.WriteString(c, "ping\n")
	if echo, err := br.ReadString('\n'); err != nil || echo != "ping\n" {
		t.Fatalf("echo %q %v", echo, err)
	}
}

// pause waits for the requests in flight, up to --drain-timeout; the ones
// still in flight after it are counted in the reply and on stderr, and
// the pause is on all the same (exit 0). They finish normally.
func TestPauseWaitsForRequestsInFlight(t *testing.T) {
	d := startTrafficApp(t)
	// slow sends a request its backend answers after ms, and returns
	// when it is in flight, with when it was sent.
	slow := func(ms int) (chan answer, time.Time) {
		c, err := dialKeepAlive("127.0.0.1:" + strconv.Itoa(d.port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		sent := time.Now()
		ch := getAsync(c, "/slow?ms="+strconv.Itoa(ms))
		waitUntil(t, "the slow request in flight", 10*time.Second, func() bool {
			return release(d.status(), "v1")["connectionCount"].(float64) >= 1
		})
		return ch, sent
	}

	// Long enough a drain: the answer comes once the slow request ended,
	// which its backend answered 3 s after it was sent at the earliest
	// (not less: a status poll must see it in flight, and the pause begin,
	// before it ends, and both are commands that take their time on a
	// loaded machine). Its client reads the answer in a goroutine of its
	// own, which may run only after the pause answered: it is waited for.
	ch, sent := slow(3000)
	r := d.cli("pause", "--drain-timeout", "20s", "--json")
	if r.code != 0 || jsonReply(t, r)["inFlight"] != 0.0 || r.stderr != "" {
		t.Fatalf("pause with a long drain: %+v", r)
	}
	if took := time.Since(sent); took < 3*time.Second {
		t.Fatalf("pause answered %v after the request was sent: before the request in flight finished (3 s)", took)
	}
	select {
	case a := <-ch:
		if a.code != 200 || a.body != "v1" {
			t.Fatalf("the slow request: %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request was not answered after the pause")
	}
	if r := d.cli("resume"); r.code != 0 {
		t.Fatalf("resume: %+v", r)
	}

	// A drain shorter than the request: reported, still a success.
	ch, _ = slow(4000)
	r = d.cli("pause", "--drain-timeout", "200ms", "--json")
	if r.code != 0 || jsonReply(t, r)["inFlight"] != 1.0 {
		t.Fatalf("pause with a short drain: %+v", r)
	}
	if !strings.Contains(r.stderr, "Warning: 1 request was still in flight after the drain timeout (200ms)") {
		t.Fatalf("stderr: %q", r.stderr)
	}
	if d.trafficOf()["state"] != "paused" {
		t.Fatal("the pause is not on after a drain that timed out")
	}
	if a := <-ch; a.code != 200 || a.body != "v1" {
		t.Fatalf("the request in flight during the pause: %+v", a)
	}
	var drained map[string]any
	for _, e := range d.events() {
		if e["message"] == "traffic drained" {
			drained = e["data"].(map[string]any)
		}
	}
	if drained["inFlight"] != 1.0 || drained["waitedMs"].(float64) < 200 {
		t.Fatalf("traffic drained event: %v", drained)
	}
}

// A pause that reaches --max-pause answers the held requests and every
// new one 503 with Retry-After until resume, and records "pause expired".
func TestPauseExpiresWith503(t *testing.T) {
	metricsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	d := startTrafficApp(t, "--metrics-address", metricsAddr)
	c, err := dialKeepAlive("127.0.0.1:" + strconv.Itoa(d.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if r := d.cli("pause", "--max-pause", "1500ms"); r.code != 0 {
		t.Fatalf("pause: %+v", r)
	}
	// That the request was held until the pause expired is read from the
	// expiry event below: a status poll has to come within the pause's
	// 1.5 s, which a loaded machine does not promise.
	held := getAsync(c, "/release")
	var a answer
	select {
	case a = <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the held request was not answered after the pause expired")
	}
	if a.err != nil || a.code != 503 {
		t.Fatalf("held request after expiry: %+v", a)
	}
	check503 := func(what string) {
		resp, err := http.Get(d.url("/release"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "10" {
			t.Fatalf("%s: %d Retry-After %q", what, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	check503("a new request after expiry")
	tr := d.trafficOf()
	if tr["state"] != "pause-expired" || tr["paused"].(map[string]any)["expired"] != true {
		t.Fatalf("status after expiry: %v", tr)
	}
	var expired map[string]any
	for _, e := range d.events() {
		if e["message"] == "pause expired" {
			expired = e["data"].(map[string]any)
		}
	}
	if expired == nil || expired["heldRequests"] != 1.0 {
		t.Fatalf("pause expired event: %v", expired)
	}
	if v, _ := value(t, scrape(t, metricsAddr), "rollbridge_gate_refused_total", map[string]string{"reason": "expired"}); v < 2 {
		t.Fatalf("rollbridge_gate_refused_total{reason=expired} = %v, want >= 2", v)
	}
	screen, _ := d.cliOnTerminal([]string{"NO_COLOR=1"}, "status")
	if !regexp.MustCompile(`(?m)^  traffic pause expired at \d\d:\d\d:\d\d: requests get 503 until "rollbridge resume"$`).MatchString(screen) {
		t.Fatalf("status on a terminal:\n%s", screen)
	}
	out, code := d.cliOnTerminal(nil, "resume")
	if code != 0 || !strings.HasPrefix(out, "Resumed after ") {
		t.Fatalf("resume: %d %q", code, out)
	}
	if code, body := d.get("/release"); code != 200 || body != "v1" {
		t.Fatalf("after resume: %d %q", code, body)
	}
}

// Maintenance through the real daemon: the body by Accept, HEAD without
// one, WebSocket upgrades refused, deploys work and leave it on, and off
// serves the new release.
func TestMaintenanceThroughTheDaemon(t *testing.T) {
	metricsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	d := startTrafficApp(t, "--metrics-address", metricsAddr)
	out, code := d.cliOnTerminal(nil, "maintenance", "on", "--message", "Back at 12:30 <b>soon</b> & fine", "--retry-after", "2m")
	if code != 0 || !strings.HasPrefix(out, "Maintenance is on: every request gets 503 with Retry-After: 120 and the message\n  Back at 12:30 <b>soon</b> & fine\n") {
		t.Fatalf("maintenance on: %d %q", code, out)
	}
	get := func(method, accept string) (*http.Response, string) {
		req, _ := http.NewRequest(method, d.url("/release"), nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "120" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s Accept %q: %d %v", method, accept, resp.StatusCode, resp.Header)
		}
		return resp, string(b)
	}
	if _, body := get("GET", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"); !strings.Contains(body, "<p>Back at 12:30 &lt;b&gt;soon&lt;/b&gt; &amp; fine</p>") {
		t.Fatalf("HTML body: %q", body)
	}
	if _, body := get("GET", "text/html;q=0.5, application/json"); body != `{"error":"maintenance","message":"Back at 12:30 \u003cb\u003esoon\u003c/b\u003e \u0026 fine"}`+"\n" {
		t.Fatalf("JSON body: %q", body)
	}
	if _, body := get("GET", ""); body != "Back at 12:30 <b>soon</b> & fine\n" {
		t.Fatalf("plain body: %q", body)
	}
	if resp, body := get("HEAD", "text/html"); body != "" || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("HEAD: %q %v", body, resp.Header)
	}

	// A WebSocket upgrade gets a raw 503 and the connection closes.
	ws, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(d.port))
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(ws, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	raw, err := io.ReadAll(bufio.NewReader(ws))
	if err != nil || !strings.HasPrefix(string(raw), "HTTP/1.1 503 ") || !strings.Contains(string(raw), "Retry-After: 120\r\n") {
		t.Fatalf("upgrade during maintenance: %q %v", raw, err)
	}

	// Deploys work during maintenance and do not end it.
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy during maintenance: %+v", r)
	}
	s := d.status()
	if s["activeReleaseId"] != "v2" || s["traffic"].(map[string]any)["state"] != "maintenance" {
		t.Fatalf("status after the deploy: %v %v", s["activeReleaseId"], s["traffic"])
	}
	get("GET", "")
	families := scrape(t, metricsAddr)
	if v, _ := value(t, families, "rollbridge_traffic_maintenance", nil); v != 1 {
		t.Fatalf("rollbridge_traffic_maintenance = %v", v)
	}
	if v, _ := value(t, families, "rollbridge_gate_refused_total", map[string]string{"reason": "maintenance"}); v < 6 {
		t.Fatalf("rollbridge_gate_refused_total{reason=maintenance} = %v, want >= 6", v)
	}
	screen, _ := d.cliOnTerminal([]string{"NO_COLOR=1"}, "status")
	if !strings.Contains(screen, `  traffic maintenance since `) || !strings.Contains(screen, `: 503 with Retry-After 120 and "Back at 12:30 <b>soon</b> & fine"`) {
		t.Fatalf("status on a terminal:\n%s", screen)
	}

	r := d.cli("maintenance", "off")
	if r.code != 0 || jsonReply(t, r)["wasEnabled"] != true {
		t.Fatalf("maintenance off: %+v", r)
	}
	if code, body := d.get("/release"); code != 200 || body != "v2" {
		t.Fatalf("after maintenance off: %d %q", code, body)
	}
	msgs := strings.Join(messages(d.events()), "|")
	if !strings.Contains(msgs, "maintenance enabled") || !strings.Contains(msgs, "maintenance disabled") {
		t.Fatalf("events: %s", msgs)
	}
	out, code = d.cliOnTerminal(nil, "maintenance", "off")
	if code != 0 || out != "Maintenance was not on; nothing changed.\n" {
		t.Fatalf("maintenance off again: %d %q", code, out)
	}
}

// Bad values are refused, by the CLI before it sends anything and by the
// daemon for a client that sends them anyway, and change nothing.
func TestTrafficBadValuesChangeNothing(t *testing.T) {
	d := startTrafficApp(t)
	for _, args := range [][]string{
		{"pause", "--max-pause", "0"},
		{"pause", "--max-pause", "2h"},
		{"pause", "--max-pause", "soon"},
		{"pause", "--max-pause", "1.5ms"},
		{"pause", "--drain-timeout", "-1s"},
		{"pause", "extra"},
		{"resume", "now"},
		{"maintenance"},
		{"maintenance", "maybe"},
		{"maintenance", "on", "--retry-after", "0"},
		{"maintenance", "on", "--retry-after", "90000"},
		{"maintenance", "on", "--retry-after", "1500ms"},
		{"maintenance", "on", "--message", "two\nlines"},
		{"maintenance", "on", "--message", strings.Repeat("x", 1001)},
		{"maintenance", "on", "--message", "\xff"},
		{"maintenance", "off", "--retry-after", "5"},
	} {
		r := d.cli(args...)
		if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "error: ") && !strings.HasPrefix(r.stderr, "Error: ") {
			t.Errorf("%q: %+v", args, r)
		}
	}
	ep := control.Endpoint{Path: d.sock}
	for _, req := range []string{
		`{"command":"pause","maxPauseMs":0}`,
		`{"command":"pause","maxPauseMs":3600001}`,
		`{"command":"pause","maxPauseMs":1.5}`,
		`{"command":"pause","maxPauseMs":"30000"}`,
		`{"command":"pause","drainTimeoutMs":-1}`,
		`{"command":"maintenance"}`,
		`{"command":"maintenance","enabled":"true"}`,
		`{"command":"maintenance","enabled":true,"retryAfterSeconds":0}`,
		`{"command":"maintenance","enabled":true,"retryAfterSeconds":1.5}`,
		`{"command":"maintenance","enabled":true,"message":"a\u0007b"}`,
		`{"command":"maintenance","enabled":true,"message":7}`,
	} {
		if raw, err := control.Call(ep, []byte(req), control.ReadTimeout); err == nil {
			t.Errorf("%s: accepted: %s", req, raw)
		}
	}
	if tr := d.trafficOf(); tr != nil {
		t.Fatalf("traffic changed: %v", tr)
	}
	for _, m := range messages(d.events()) {
		switch m {
		case "traffic paused", "traffic drained", "traffic resumed", "pause expired", "maintenance enabled", "maintenance disabled":
			t.Fatalf("event %q after refused commands", m)
		}
	}
	if code, body := d.get("/release"); code != 200 || body != "v1" {
		t.Fatalf("serving: %d %q", code, body)
	}
}

// A daemon without the traffic commands (the Node.js rollbridge, an
// older build) answers "Unknown command": the CLI says what that means
// and what to do, and fails. A refusal of resume is relayed with exit 1.
func TestTrafficCommandsOnADaemonWithoutThem(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "rb.sock")
	var lastResume atomic.Value
	fakeControl(t, sock, func(line string) (string, bool) {
		var req struct{ Command string }
		json.Unmarshal([]byte(line), &req)
		if req.Command == "resume" && lastResume.Load() != nil {
			return `{"status":"error","error":"Traffic is held by the deploy of release v3 (deploy --hold-traffic); it goes on by itself when that deploy switches or is called off, by 2026-01-01T12:00:00Z at the latest."}`, true
		}
		return `{"status":"error","error":"Unknown command: ` + req.Command + `"}`, true
	})
	for _, args := range [][]string{{"pause"}, {"resume"}, {"maintenance", "on"}, {"maintenance", "off"}} {
		r := rollbridge(t, dir, append(args, "--socket", sock)...)
		if r.code != 1 || r.stdout != "" ||
			!strings.HasPrefix(r.stderr, "Error: The running daemon does not support "+args[0]+": it is the Node.js rollbridge or an older rollbridge.\n") ||
			!strings.Contains(r.stderr, "rollbridge daemon --takeover-owner") {
			t.Errorf("%q: %+v", args, r)
		}
	}
	lastResume.Store(true)
	r := rollbridge(t, dir, "resume", "--socket", sock)
	if r.code != 1 || r.stderr != "Error: Traffic is held by the deploy of release v3 (deploy --hold-traffic); it goes on by itself when that deploy switches or is called off, by 2026-01-01T12:00:00Z at the latest.\n" {
		t.Fatalf("resume refused: %+v", r)
	}
}

// The terminal forms of pause and maintenance say what clients get and
// what to run next.
func TestTrafficCommandsOnATerminal(t *testing.T) {
	d := startTrafficApp(t)
	out, code := d.cliOnTerminal(nil, "pause", "--max-pause", "45")
	if code != 0 || !regexp.MustCompile(`^Traffic paused: new requests are held \(not forwarded, not refused\)\. No request is in flight any more\.
The pause expires at \d\d:\d\d:\d\d \(in 4[45]s\): then held and new requests get 503 until you run "rollbridge resume"\.
Resume with: rollbridge resume
$`).MatchString(out) {
		t.Fatalf("pause: %d %q", code, out)
	}
	c, err := dialKeepAlive("127.0.0.1:" + strconv.Itoa(d.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held := getAsync(c, "/release")
	waitUntil(t, "the request held", 5*time.Second, func() bool { return d.heldRequests() == 1 })
	out, code = d.cliOnTerminal(nil, "resume")
	if code != 0 || !regexp.MustCompile(`^Resumed: 1 held request went on to release v1 after \d+\.\d s\.\n$`).MatchString(out) {
		t.Fatalf("resume: %d %q", code, out)
	}
	if a := <-held; a.code != 200 || a.body != "v1" {
		t.Fatalf("held request: %+v", a)
	}
	out, code = d.cliOnTerminal(nil, "maintenance", "on")
	if code != 0 || !strings.Contains(out, "\n  The site is down for maintenance. Please try again later.\n") || !strings.Contains(out, "End it with: rollbridge maintenance off\n") {
		t.Fatalf("maintenance on: %d %q", code, out)
	}
	if _, body := d.get("/"); body != "The site is down for maintenance. Please try again later.\n" {
		t.Fatalf("default message: %q", body)
	}
	out, code = d.cliOnTerminal(nil, "maintenance", "off")
	if code != 0 || out != "Maintenance is off.\nRequests go to the active release again.\n" {
		t.Fatalf("maintenance off: %d %q", code, out)
	}
}

// The state file records an operator's pause and maintenance (a
// successor restores them) with only the members that outlive the
// daemon: no deploy hold and no held requests, which die with it.
func TestStateFileRecordsTrafficWithoutDeployHold(t *testing.T) {
	from, to := randomPortWindow(20000, 20999, 20)
	dir := t.TempDir()
	state := filepath.Join(dir, "state", "rollbridge.json")
	os.Mkdir(filepath.Dir(state), 0o755)
	d := startDaemon(t, fmt.Sprintf(`statePath: %q, processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: %d, to: %d}, health: {intervalMs: 20}}]`, state, from, to))
	d.deploy("v1")
	read := func() map[string]any {
		data, _ := os.ReadFile(state)
		var s map[string]any
		json.Unmarshal(data, &s)
		return s
	}
	if r := d.cli("maintenance", "on", "--message", "brb"); r.code != 0 {
		t.Fatalf("maintenance on: %+v", r)
	}
	if r := d.cli("pause", "--max-pause", "10m"); r.code != 0 {
		t.Fatalf("pause: %+v", r)
	}
	var tr map[string]any
	waitUntil(t, "the state file to record the pause", 10*time.Second, func() bool {
		tr, _ = read()["traffic"].(map[string]any)
		return tr != nil && tr["paused"] != nil
	})
	var keys []string
	for k := range tr {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "maintenance,paused,state" || tr["state"] != "maintenance" || tr["maintenance"].(map[string]any)["message"] != "brb" {
		t.Fatalf("traffic in the state file: %v", tr)
	}
	d.cli("maintenance", "off")
	d.cli("resume")
	waitUntil(t, "the state file to drop traffic", 10*time.Second, func() bool {
		s := read()
		_, has := s["traffic"]
		return s != nil && !has
	})
}
