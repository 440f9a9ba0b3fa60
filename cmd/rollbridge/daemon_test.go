package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDeploySwitchesTrafficAndShutsDown(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`, {id: "worker", command: "exec FIXTURE -lines 1", replicas: 2}]`)
	if code, body := d.get("/release"); code != 503 || body != "No active release\n" {
		t.Fatalf("before the first deploy: %d %q", code, body)
	}
	if r := d.deploy("v1"); r.code != 0 || r.stdout != "{\n  \"status\": \"success\",\n  \"activeReleaseId\": \"v1\",\n  \"previousReleaseId\": null\n}\n" {
		t.Fatalf("deploy v1: %+v", r)
	}
	if _, body := d.get("/release"); body != "v1" {
		t.Fatalf("after v1: %q", body)
	}
	if r := d.deploy("v2"); r.code != 0 || !strings.Contains(r.stdout, `"previousReleaseId": "v1"`) {
		t.Fatalf("deploy v2: %+v", r)
	}
	if _, body := d.get("/release"); body != "v2" {
		t.Fatalf("after v2: %q", body)
	}
	waitUntil(t, "v1 to drain", 20*time.Second, func() bool { return release(d.status(), "v1")["state"] == "stopped" })

	s := d.status()
	var keys []string
	dec := json.NewDecoder(strings.NewReader(d.cli("status").stdout))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	if want := []string{"status", "activeReleaseId", "application", "control", "daemonRuntime", "orphans", "proxy", "releases", "services", "singletons"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("status keys %v", keys)
	}
	v2 := release(s, "v2")
	if s["activeReleaseId"] != "v2" || v2["state"] != "active" || v2["revision"] != "v2" || v2["activatedAt"] == nil {
		t.Fatalf("v2: %v", v2)
	}
	var ids []string
	for _, p := range v2["processes"].([]any) {
		ids = append(ids, p.(map[string]any)["id"].(string))
	}
	if !reflect.DeepEqual(ids, []string{"worker#0", "worker#1", "web"}) {
		t.Fatalf("companions start before the proxied process: %v", ids)
	}
	rt := s["daemonRuntime"].(map[string]any)
	if rt["format"] != 1.0 || rt["version"] != "0.2.0" || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(rt["digest"].(string)) {
		t.Fatalf("daemonRuntime %v", rt)
	}
	msgs := strings.Join(messages(d.events()), "|")
	for _, want := range []string{"proxy listening|control socket listening|deploy starting|process started", "traffic switched", "release drained"} {
		if !strings.Contains(msgs, want) {
			t.Errorf("events lack %q: %s", want, msgs)
		}
	}
	if !strings.Contains(d.stdout.String(), `"message":"traffic switched"`) {
		t.Error("the daemon log on stdout lacks the events")
	}
	d.shutdown()

	// The socket is gone and a new daemon starts at once with the same config.
	if r := rollbridge(t, d.dir, "status", "-c", d.config); r.code != 1 || r.stderr != "Error: connect ENOENT "+d.sock+"\nNo daemon is running on this socket. Start one with \"rollbridge ensure-daemon -c "+d.config+"\".\n" {
		t.Fatalf("status after shutdown: %+v", r)
	}
	d.start()
	d.shutdown()
}

func TestFailedHealthCheckKeepsTheActiveRelease(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	d.deploy("v1")
	// The next deploy's web answers 503 on its health path. The window
	// must outlast its start on a loaded machine, or the reason read is
	// "connection refused".
	d.writeConfig(`processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen -stderr booting", port: {from: 20000, to: 20999}, health: {path: "/status?code=503", intervalMs: 20, timeoutMs: 2000}}]`)
	r := d.deploy("v2")
	if r.code != 1 || !regexp.MustCompile(`^Error: Health check failed for http://127\.0\.0\.1:\d+/status\?code=503: HTTP 503\nweb did not exit; last output: booting\n$`).MatchString(r.stderr) || r.stdout != "" {
		t.Fatalf("deploy v2: %+v", r)
	}
	if _, body := d.get("/release"); body != "v1" {
		t.Fatalf("traffic after the failed deploy: %q", body)
	}
	s := d.status()
	if s["activeReleaseId"] != "v1" || release(s, "v2") != nil || release(s, "v1")["state"] != "active" {
		t.Fatalf("status %v", s["releases"])
	}
	ev := d.events()
	var phases []string
	for _, e := range ev {
		data := e["data"].(map[string]any)
		switch e["message"] {
		case "release startup failed":
			phases = append(phases, data["phase"].(string))
		case "release startup process status":
			if data["phase"] == "before cleanup" && !strings.Contains(string(mustJSON(data["logs"])), "booting") {
				t.Errorf("diagnostics lack the process output: %v", data)
			}
		}
	}
	if !reflect.DeepEqual(phases, []string{"before cleanup", "after cleanup"}) || !strings.Contains(strings.Join(messages(ev), "|"), "deploy failed|command failed") {
		t.Fatalf("events %v", messages(ev))
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// A WebSocket opened before a deploy keeps the old release draining, with
// its connection counted, until the client closes it.
func TestWebSocketHoldsTheDrain(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	d.deploy("v1")
	ws, hello := d.openWebSocket()
	defer ws.Close()
	if hello != "hello v1" {
		t.Fatalf("greeting %q", hello)
	}
	d.deploy("v2")
	v1 := release(d.status(), "v1")
	conns := v1["connections"].(map[string]any)
	if v1["state"] != "draining" || conns["websocket"] != 1.0 || v1["connectionCount"] != 1.0 || v1["drainStartedAt"] == nil {
		t.Fatalf("v1 while the socket is open: %v", v1)
	}
	if _, body := d.get("/release"); body != "v2" {
		t.Fatalf("new requests go to v2: %q", body)
	}
	// The old tunnel still works.
	io.WriteString(ws, "still here\n")
	if line, _ := ws.r.ReadString('\n'); line != "still here\n" {
		t.Fatalf("echo %q", line)
	}
	ws.Close()
	waitUntil(t, "v1 to drain once the socket closed", 10*time.Second, func() bool {
		return release(d.status(), "v1")["state"] == "stopped"
	})
}

// Requests keep succeeding through five deploys: keep-alive clients, new
// connections and slow requests in flight across the switches.
func TestNoFailedRequestsAcrossDeploys(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	d.deploy("v0")
	tr := startTraffic(d.url(""), trafficClient{"/release", true}, trafficClient{"/release", true}, trafficClient{"/release", false}, trafficClient{"/slow?ms=150", true})
	for i := 1; i <= 5; i++ {
		tr.waitFor(t, "traffic", 20)
		if r := d.deploy("v" + string(rune('0'+i))); r.code != 0 {
			t.Fatalf("deploy %d: %+v", i, r)
		}
	}
	tr.waitFor(t, "traffic after the last deploy", 20)
	if f := tr.stop(); len(f) != 0 {
		t.Fatalf("%d of %d requests failed; first: %v", len(f), int64(len(f))+tr.ok.Load(), f[0].err)
	}
	if _, body := d.get("/release"); body != "v5" {
		t.Fatalf("final release %q", body)
	}
}

func TestReplicasGetTheirIndex(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`, {id: "worker", command: "echo replica $ROLLBRIDGE_REPLICA_INDEX/$ROLLBRIDGE_REPLICA_COUNT {{replicaIndex}}; exec FIXTURE", replicas: 3}]`)
	d.deploy("v1")
	var sources []struct {
		ID     string `json:"id"`
		Source string `json:"source"`
		Logs   []struct{ Line string }
	}
	got := map[string]string{}
	// The deploy's answer does not wait for the companions' output: the
	// daemon reads it from their pipes meanwhile.
	waitUntil(t, "a line from each replica", 10*time.Second, func() bool {
		sources = nil
		if err := json.Unmarshal([]byte(d.cli("logs", "--json").stdout), &sources); err != nil {
			t.Fatal(err)
		}
		got = map[string]string{}
		for _, s := range sources {
			if len(s.Logs) > 0 {
				got[s.ID] = s.Logs[0].Line
			}
		}
		return got["worker#0"] != "" && got["worker#1"] != "" && got["worker#2"] != ""
	})
	for _, s := range sources {
		if s.Source != "release v1 (active)" {
			t.Errorf("source %q", s.Source)
		}
	}
	want := map[string]string{"worker#0": "replica 0/3 0", "worker#1": "replica 1/3 1", "worker#2": "replica 2/3 2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replica output %v", got)
	}
	text := d.cli("logs", "--process", "worker#1").stdout
	if !regexp.MustCompile(`^== worker#1 \[release v1 \(active\)\] ==\n  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[stdout\] replica 1/3 1\n$`).MatchString(text) {
		t.Fatalf("logs text %q", text)
	}
	if r := d.cli("logs", "--process", "nope"); r.code != 0 || r.stdout != "No process found with id \"nope\".\n" {
		t.Fatalf("logs no match: %+v", r)
	}
}

func TestDeployBadInputLeavesTheActiveRelease(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	d.deploy("v1")
	missing := filepath.Join(d.dir, "no-such-release")
	cases := []struct {
		name, config, want string
		deploy             func() result
	}{
		{"missing release path", `processes: [` + webProcess + `]`, "Error: cannot start web: working directory " + missing + " does not exist\n",
			func() result { return d.cli("deploy", "--release-path", missing, "--release-id", "bad") }},
		{"missing template value", `processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen {{nope}}", port: {from: 20000, to: 20999}}]`,
			"Error: Missing template value for {{nope}}\n", func() result { return d.deploy("bad") }},
		{"incompatible reload", `proxy: {port: 1}, processes: [` + webProcess + `]`,
			"Error: Config changes to proxy.port cannot be applied live; restart the Rollbridge daemon before deploying.\n  proxy.port: 0 → 1\n", func() result { return d.deploy("bad") }},
		{"empty release path", `processes: [` + webProcess + `]`, "Error: releasePath is required\n",
			func() result { return d.cli("deploy", "--release-path", "") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d.writeConfig(c.config)
			if strings.Contains(c.config, "port: 1}") {
				// proxy.port is already inside appConfig; override by rewriting the head.
				content := strings.Replace(appConfig(d.dir, `processes: [`+webProcess+`]`), "port: 0,", "port: 1,", 1)
				os.WriteFile(d.config, []byte(content), 0o644)
			}
			r := c.deploy()
			if r.code != 1 || r.stderr != c.want {
				t.Fatalf("got %+v\nwant %q", r, c.want)
			}
			if _, body := d.get("/release"); body != "v1" {
				t.Fatalf("traffic moved: %q", body)
			}
			s := d.status()
			if s["activeReleaseId"] != "v1" || len(s["releases"].([]any)) != 1 {
				t.Fatalf("status %v", s["releases"])
			}
		})
	}
	d.writeConfig(`processes: [` + webProcess + `]`)
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("a good deploy after the bad ones: %+v", r)
	}
}

func TestPortRangeExhausted(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.Addr().(*net.TCPAddr).Port
	d := startDaemon(t, `processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: `+itoa(port)+`}]`)
	r := d.deploy("v1")
	want := "Error: No available ports in range " + itoa(port) + "-" + itoa(port) + " (1 port on 127.0.0.1): 0 reserved by this deploy, 1 already in use. Widen the port range, free a port, or check bind permissions.\n"
	if r.code != 1 || r.stderr != want {
		t.Fatalf("got %+v\nwant %q", r, want)
	}
	if ev := messages(d.events()); ev[len(ev)-2] != "deploy failed" || strings.Contains(strings.Join(ev, "|"), "release startup failed") {
		t.Fatalf("a port failure happens before the release starts: %v", ev)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// The wire format: one compact JSON object per line, status first,
// errors as {"error","status"}; every line answered; over-long lines cut.
func TestControlWireFormat(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	c, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "this is not json\n\n123\n[]\n{\"command\":\"bogus\"}\n{\"command\":\"deploy\",\"releasePath\":\"/x\",\"releaseId\":7}\n{\"command\":\"status\",\"extra\":1}\r\n")
	r := bufio.NewReader(c)
	want := []string{
		`{"error":"Unexpected token 'h', \"this is not json\" is not valid JSON","status":"error"}`,
		`{"error":"Unexpected end of JSON input","status":"error"}`,
		`{"error":"Control command must be an object","status":"error"}`,
		`{"error":"Unknown command: undefined","status":"error"}`,
		`{"error":"Unknown command: bogus","status":"error"}`,
		`{"error":"Expected string value","status":"error"}`,
	}
	for _, w := range want {
		line, err := r.ReadString('\n')
		if err != nil || line != w+"\n" {
			t.Fatalf("got %q %v, want %q", line, err, w)
		}
	}
	line, _ := r.ReadString('\n')
	if !strings.HasPrefix(line, `{"status":"success","activeReleaseId":null,"application":"itest",`) || strings.Contains(line, "\n ") {
		t.Fatalf("status line %q", line)
	}
	// A line over 1 MiB is refused and the connection closed.
	c2, _ := net.Dial("unix", d.sock)
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	go c2.Write([]byte(`{"command":"status","pad":"` + strings.Repeat("x", 1<<20) + "\"}\n"))
	got, _ := io.ReadAll(c2)
	if string(got) != `{"error":"Control request exceeds 1 MiB","status":"error"}`+"\n" {
		t.Fatalf("oversized request: %q", got)
	}
	// The daemon still serves.
	if r := d.cli("status"); r.code != 0 {
		t.Fatal("the daemon stopped answering")
	}
}

func TestSecondDaemonAndSocketPath(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	d.deploy("v1")
	r := rollbridge(t, d.dir, "daemon", "-c", d.config)
	want := `Error: A Rollbridge daemon for application "itest" is already running on ` + d.sock + ` (active release: v1). Run "rollbridge status" to inspect it or "rollbridge shutdown" to stop it, or set a different control.path.` + "\n"
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Fatalf("second daemon: %+v", r)
	}
	if _, body := d.get("/release"); body != "v1" {
		t.Fatal("the first daemon stopped serving")
	}
	d.shutdown()

	// A stale socket (a crashed daemon's) is replaced silently.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: d.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	d.start()
	d.shutdown()

	// Anything else at the path is refused and left alone.
	os.WriteFile(d.sock, []byte("not a socket"), 0o644)
	r = rollbridge(t, d.dir, "daemon", "-c", d.config)
	if r.code != 1 || r.stdout != "" || r.stderr != "Error: Refusing to start: "+d.sock+" exists and is not a socket; remove it or choose another control.path\n" {
		t.Fatalf("non-socket (refused before anything is bound): %+v", r)
	}
	if r := d.cli("doctor"); r.code != 1 || !strings.Contains(r.stdout, "✗ control socket: "+d.sock+" exists and is not a socket; the daemon would refuse to start\n") {
		t.Fatalf("doctor: %+v", r)
	}
	if data, _ := os.ReadFile(d.sock); string(data) != "not a socket" {
		t.Fatal("the file at control.path was touched")
	}
	os.Remove(d.sock)
}

func TestEnsureDaemonIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	os.WriteFile(config, []byte(appConfig(dir, `processes: [`+webProcess+`]`)), 0o644)
	logFile, pidFile := filepath.Join(dir, "logs", "daemon.log"), filepath.Join(dir, "run", "daemon.pid")
	args := []string{"ensure-daemon", "-c", config, "--daemon-log-path", logFile, "--daemon-pid-path", pidFile}
	first := rollbridge(t, dir, args...)
	if first.code != 0 || !strings.HasPrefix(first.stdout, "{\n  \"status\": \"success\",\n  \"activeReleaseId\": null,") {
		t.Fatalf("first ensure-daemon: %+v", first)
	}
	pidData, _ := os.ReadFile(pidFile)
	pid := strings.TrimSpace(string(pidData))
	t.Cleanup(func() {
		rollbridge(t, dir, "shutdown", "-c", config)
		waitUntil(t, "the ensured daemon to exit", 20*time.Second, func() bool { return !alive(atoi(pid)) })
	})
	second := rollbridge(t, dir, args...)
	if second.code != 0 || second.stdout != first.stdout {
		t.Fatalf("second ensure-daemon: %+v", second)
	}
	if data, _ := os.ReadFile(pidFile); strings.TrimSpace(string(data)) != pid {
		t.Fatal("a second daemon was started")
	}
	release := filepath.Join(dir, "r1")
	os.Mkdir(release, 0o755)
	if r := rollbridge(t, dir, "deploy", "-c", config, "--release-path", release, "--ensure-daemon", "--daemon-log-path", logFile, "--daemon-pid-path", pidFile); r.code != 0 {
		t.Fatalf("deploy --ensure-daemon: %+v", r)
	}
	if data, _ := os.ReadFile(logFile); !strings.Contains(string(data), `"message":"traffic switched"`) {
		t.Fatalf("the daemon log file: %s", data)
	}
	if r := rollbridge(t, dir, append(args, "--daemon-start-timeout-ms", "0")...); r.code != 1 || r.stderr != "Error: --daemon-start-timeout-ms must be a positive number\n" {
		t.Fatalf("bad timeout: %+v", r)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// Status and events answer while a deploy waits on its health check, and
// a shutdown ends the waiting deploy and everything it started.
func TestShutdownDuringDeploy(t *testing.T) {
	d := startDaemon(t, `processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: 20000, to: 20999}, health: {startDelayMs: 60000}}]`)
	done := make(chan result)
	go func() { done <- d.cli("deploy", "--release-path", d.dir, "--release-id", "slow") }()
	waitUntil(t, "the deploy to start its process", 10*time.Second, func() bool {
		return strings.Contains(d.stdout.String(), `"message":"process started"`)
	})
	start := time.Now()
	s := d.status()
	if s["activeReleaseId"] != nil || len(s["releases"].([]any)) != 0 {
		t.Fatalf("a starting release is not in status: %v", s)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("status waited for the deploy")
	}
	// The starting release's pid, for the leak check.
	var pid int
	for _, line := range strings.Split(d.stdout.String(), "\n") {
		if strings.Contains(line, `"message":"process started"`) {
			var e struct{ Data struct{ Pid int } }
			json.Unmarshal([]byte(line), &e)
			pid = e.Data.Pid
		}
	}
	d.pids[pid] = true
	d.shutdown()
	r := <-done
	if r.code != 1 || !(strings.Contains(r.stderr, "Rollbridge is shutting down") || strings.Contains(r.stderr, "closed the connection without a response")) {
		t.Fatalf("the interrupted deploy: %+v", r)
	}
}
