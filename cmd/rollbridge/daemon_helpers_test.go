package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testDaemon is a real `rollbridge daemon` on loopback, driven through the
// CLI and the proxy.
type testDaemon struct {
	t       testing.TB
	dir     string
	config  string
	sock    string
	cmd     *exec.Cmd
	stdout  *syncBuffer
	stderr  *syncBuffer
	exited  chan struct{}
	exitErr error
	port    int
	pids    map[int]bool // every managed pid seen in status

	args []string // extra daemon options (bootstrap, takeover)
	env  []string // extra environment
	// wrap, when set, runs the daemon through this command, which gets the
	// binary and its arguments after it (e.g. sh -c 'umask 0; exec "$0" "$@"').
	wrap []string
	// ready reports that the daemon is up; nil waits for status to answer.
	ready func() bool
	// command, when set, builds the daemon's command from its arguments
	// (a harness playing systemd's part: its environment and the stored
	// descriptors as ExtraFiles, closed here once the daemon started).
	command func(args []string) *exec.Cmd
	// handedOver: the control socket went to a takeover candidate, so it
	// outlives this daemon.
	handedOver bool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// appConfig is a config whose web process is the fixture; body is the
// rest of the export (processes and overrides) and may use FIXTURE.
func appConfig(dir, body string) string {
	return fmt.Sprintf(`export default {
  application: "itest",
  control: {path: %q},
  proxy: {port: 0, drainTimeoutMs: 30000, forceStopTimeoutMs: 5000},
  %s
};
`, filepath.Join(dir, "rb.sock"), strings.ReplaceAll(body, "FIXTURE", fixture))
}

const webProcess = `{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: 20000, to: 20999}, health: {intervalMs: 20}}`

// writeConfig writes the config file of d (also to change it between deploys).
func (d *testDaemon) writeConfig(body string) {
	d.t.Helper()
	if err := os.WriteFile(d.config, []byte(appConfig(d.dir, body)), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// startDaemon starts a daemon and waits until it answers; the test's
// cleanup shuts it down and checks that none of its processes survived.
func startDaemon(t *testing.T, body string) *testDaemon {
	t.Helper()
	d := newTestDaemon(t, body)
	d.start()
	t.Cleanup(d.cleanup)
	return d
}

// newTestDaemon prepares a daemon's directory and config without starting
// it, for tests that set how it is started.
func newTestDaemon(t *testing.T, body string) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{}}
	d.writeConfig(body)
	return d
}

func (d *testDaemon) start() {
	d.t.Helper()
	d.stdout, d.stderr, d.exited = &syncBuffer{}, &syncBuffer{}, make(chan struct{})
	args := append([]string{binary, "daemon", "-c", d.config}, d.args...)
	if d.wrap != nil {
		args = append(append([]string(nil), d.wrap...), args...)
	}
	if d.command != nil {
		d.cmd = d.command(args)
		d.cmd.Env = append(d.cmd.Env, d.env...)
	} else {
		d.cmd = exec.Command(args[0], args[1:]...)
		d.cmd.Env = append(os.Environ(), d.env...)
	}
	d.cmd.Dir = d.dir
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := d.cmd.Start()
	for _, f := range d.cmd.ExtraFiles {
		f.Close()
	}
	if err != nil {
		d.t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if d.ready != nil {
			if d.ready() {
				return
			}
		} else if r := d.cli("status"); r.code == 0 {
			var s struct{ Proxy struct{ Port int } }
			json.Unmarshal([]byte(r.stdout), &s)
			d.port = s.Proxy.Port
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("the daemon exited: %v\nstderr: %s", d.exitErr, d.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the daemon did not answer\nstdout: %s\nstderr: %s", d.stdout.String(), d.stderr.String())
		}
	}
}

// cli runs a rollbridge command against d's config.
func (d *testDaemon) cli(args ...string) result {
	d.t.Helper()
	if len(args) > 0 && args[0] != "daemon" {
		args = append(args[:1:1], append([]string{"-c", d.config}, args[1:]...)...)
	}
	return rollbridge(d.t, d.dir, args...)
}

// status returns the parsed status and records the pids in it.
func (d *testDaemon) status() map[string]any {
	d.t.Helper()
	r := d.cli("status")
	if r.code != 0 {
		d.t.Fatalf("status: %+v", r)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		d.t.Fatal(err)
	}
	d.recordPids(s)
	return s
}

func (d *testDaemon) recordPids(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "pid" {
				if f, ok := e.(float64); ok {
					d.pids[int(f)] = true
				}
			}
			d.recordPids(e)
		}
	case []any:
		for _, e := range x {
			d.recordPids(e)
		}
	}
}

// release returns the status entry of release id, or nil.
func release(s map[string]any, id string) map[string]any {
	for _, r := range s["releases"].([]any) {
		if m := r.(map[string]any); m["releaseId"] == id {
			return m
		}
	}
	return nil
}

// releasePath creates (if needed) and returns the directory of release id.
func (d *testDaemon) releasePath(id string) string {
	d.t.Helper()
	path := filepath.Join(d.dir, "releases", id)
	if err := os.MkdirAll(path, 0o755); err != nil {
		d.t.Fatal(err)
	}
	return path
}

func (d *testDaemon) deploy(id string) result {
	d.t.Helper()
	r := d.cli("deploy", "--release-path", d.releasePath(id), "--release-id", id)
	d.status()
	return r
}

func (d *testDaemon) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(d.port) + path
}

func (d *testDaemon) get(path string) (int, string) {
	d.t.Helper()
	resp, err := http.Get(d.url(path))
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// shutdown asks the daemon to stop and waits for it to exit 0.
func (d *testDaemon) shutdown() {
	d.t.Helper()
	d.status()
	r := d.cli("shutdown")
	if r.code != 0 || r.stdout != "{\n  \"status\": \"success\",\n  \"message\": \"shutdown\"\n}\n" {
		d.t.Fatalf("shutdown: %+v", r)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.t.Fatal("the daemon did not exit after shutdown")
	}
	if d.exitErr != nil {
		d.t.Fatalf("daemon exit: %v\n%s", d.exitErr, d.stderr.String())
	}
	d.assertNothingLeft()
}

func (d *testDaemon) assertNothingLeft() {
	d.t.Helper()
	if _, err := os.Lstat(d.sock); err == nil && !d.handedOver {
		d.t.Error("the control socket file is still there")
	}
	for pid := range d.pids {
		if alive(pid) {
			d.t.Errorf("managed process %d outlived the daemon", pid)
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

func (d *testDaemon) cleanup() {
	select {
	case <-d.exited:
		d.assertNothingLeft()
		return
	default:
	}
	if d.handedOver {
		// Its socket belongs to the successor: wait for it to exit.
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			d.t.Error("the retired daemon did not exit")
		}
		d.assertNothingLeft()
		return
	}
	if r := d.cli("status"); r.code == 0 {
		var s map[string]any
		if json.Unmarshal([]byte(r.stdout), &s) == nil {
			d.recordPids(s)
		}
		d.cli("shutdown")
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		d.t.Error("the daemon had to be killed at the end of the test")
	}
	d.assertNothingLeft()
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wsConn is a WebSocket opened through the proxy to the fixture's /ws.
type wsConn struct {
	net.Conn
	r *bufio.Reader
}

func (d *testDaemon) openWebSocket() (*wsConn, string) {
	d.t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(d.port))
	if err != nil {
		d.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	r := bufio.NewReader(c)
	status, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101") {
		d.t.Fatalf("upgrade answered %q %v", status, err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			d.t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	hello, err := r.ReadString('\n')
	if err != nil {
		d.t.Fatal(err)
	}
	return &wsConn{Conn: c, r: r}, strings.TrimSpace(hello)
}

// events returns the messages of the daemon's events, oldest first.
func (d *testDaemon) events() []map[string]any {
	d.t.Helper()
	r := d.cli("events", "--json")
	if r.code != 0 {
		d.t.Fatalf("events: %+v", r)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		d.t.Fatal(err)
	}
	return list
}

func messages(events []map[string]any) []string {
	var out []string
	for _, e := range events {
		out = append(out, e["message"].(string))
	}
	return out
}

// traffic keeps HTTP clients busy through the proxy and records every
// failure with its time, until stop.
type traffic struct {
	done     chan struct{}
	wg       sync.WaitGroup
	ok       atomic.Int64
	mu       sync.Mutex
	failures []trafficFailure
}

type trafficFailure struct {
	at  time.Time
	err string
}

// trafficClient is one client loop: a path, and whether it keeps its
// connection alive.
type trafficClient struct {
	path      string
	keepAlive bool
}

// startTraffic runs one loop per client against base (http://host:port).
func startTraffic(base string, clients ...trafficClient) *traffic {
	tr := &traffic{done: make(chan struct{})}
	for _, c := range clients {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !c.keepAlive, MaxIdleConnsPerHost: 4}}
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for {
				select {
				case <-tr.done:
					return
				default:
				}
				resp, err := client.Get(base + c.path)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				tr.record(err)
			}
		}()
	}
	return tr
}

// record counts the outcome of one request: a success, or a failure
// with its time.
func (tr *traffic) record(err error) {
	if err == nil {
		tr.ok.Add(1)
		return
	}
	tr.mu.Lock()
	tr.failures = append(tr.failures, trafficFailure{time.Now(), err.Error()})
	tr.mu.Unlock()
}

// waitFor waits until n more requests than now have succeeded.
func (tr *traffic) waitFor(t *testing.T, what string, n int64) {
	t.Helper()
	before := tr.ok.Load()
	waitUntil(t, what, 10*time.Second, func() bool { return tr.ok.Load() > before+n })
}

// stop ends the loops and returns the failures.
func (tr *traffic) stop() []trafficFailure {
	close(tr.done)
	tr.wg.Wait()
	return tr.failures
}

// mixedClients is half keep-alive, half a new connection per request.
func mixedClients(n int, path string) []trafficClient {
	var out []trafficClient
	for i := 0; i < n; i++ {
		out = append(out, trafficClient{path: path, keepAlive: i%2 == 0})
	}
	return out
}

// keepAliveConn is one raw HTTP/1.1 keep-alive client connection: it
// sends each request once and never repeats one (Go's http.Client repeats
// an idempotent request whose reused connection the server closed, which
// hides the races the tests look for).
type keepAliveConn struct {
	net.Conn
	r *bufio.Reader
}

func dialKeepAlive(addr string) (*keepAliveConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &keepAliveConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// get sends GET path and reads the answer: its status and body, and
// whether the server asked to close the connection (Connection: close).
func (c *keepAliveConn) get(path string) (code int, body string, closing bool, err error) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: itest\r\n\r\n"); err != nil {
		return 0, "", false, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, "", false, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), resp.Close, err
}

// fakeControl listens on sock as a stand-in daemon. The first request
// line of every connection goes to answer; its reply is written back, or,
// when answer gives none, the connection is held until the client leaves.
func fakeControl(t *testing.T, sock string, answer func(request string) (reply string, replies bool)) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if reply, ok := answer(line); ok {
					io.WriteString(c, reply+"\n")
				} else {
					io.Copy(io.Discard, r) // answer nothing until the client leaves
				}
			}()
		}
	}()
}
