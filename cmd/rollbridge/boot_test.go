package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine"
)

const attestation = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// runDaemonOnce runs a daemon that is expected to exit by itself.
func runDaemonOnce(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"daemon"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return runToEnd(t, cmd)
}

func TestBootstrapOptionValidation(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	os.WriteFile(config, []byte(appConfig(dir, `processes: [`+webProcess+`]`)), 0o644)
	rel := filepath.Join(dir, "releases", "r1")
	os.MkdirAll(rel, 0o755)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	tuple := func(path, id, rev string) []string {
		return []string{"--release-path", path, "--release-id", id, "--revision", rev}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", config, "--boot-attestation", attestation}, "Daemon --boot-attestation is accepted only with --config, --release-path, --release-id, and --revision."},
		{[]string{"-c", config, "--release-path", rel}, "Daemon bootstrap options --config, --release-path, --release-id, and --revision must be provided together."},
		{tuple(rel, "r1", "abc"), "Daemon bootstrap options --config, --release-path, --release-id, and --revision must be provided together."},
		{append([]string{"-c", "rollbridge.js"}, tuple(rel, "r1", "abc")...), "Daemon bootstrap --config must be an absolute path."},
		{append([]string{"-c", dir + "/./rollbridge.js"}, tuple(rel, "r1", "abc")...), "Daemon bootstrap --config must be normalized and must not contain unsafe traversal segments."},
		{append([]string{"-c", config}, tuple("releases/r1", "r1", "abc")...), "Daemon bootstrap --release-path must be an absolute path."},
		{append([]string{"-c", config}, tuple(dir+"//releases/r1", "r1", "abc")...), "Daemon bootstrap --release-path must be normalized and must not contain unsafe traversal segments."},
		{append([]string{"-c", config}, tuple(rel, "-r1", "abc")...), "Daemon bootstrap --release-id must be a non-empty safe identifier containing only letters, numbers, dots, underscores, and hyphens."},
		{append([]string{"-c", config}, tuple(rel, "r1", "a b")...), "Daemon bootstrap --revision must be a non-empty safe identifier containing only letters, numbers, dots, underscores, and hyphens."},
		{append(append([]string{"-c", config}, tuple(rel, "r1", "abc")...), "--boot-attestation", strings.ToUpper(attestation)), "Daemon bootstrap --boot-attestation must use the canonical sha256:<64 lowercase hex> format."},
		{append([]string{"-c", config}, tuple(rel+"x", "r1", "abc")...), "Daemon bootstrap --release-path is not accessible: ENOENT: no such file or directory, stat '" + rel + "x'"},
		{append([]string{"-c", config}, tuple(file, "r1", "abc")...), "Daemon bootstrap --release-path must name a directory."},
		{append(append([]string{"-c", config}, tuple(rel, "r1", "abc")...), "--takeover-owner"), "Daemon --takeover-owner requires the complete bootstrap release tuple and --boot-attestation."},
		{[]string{"-c", config, "--takeover-owner"}, "Daemon --takeover-owner requires the complete bootstrap release tuple and --boot-attestation."},
	} {
		r := runDaemonOnce(t, dir, nil, tc.args...)
		if r.code != 1 || r.stdout != "" || r.stderr != "Error: "+tc.want+"\n" {
			t.Errorf("%v:\n got %+v\nwant %s", tc.args, r, tc.want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "rb.sock")); err == nil {
		t.Fatal("a refused daemon created its control socket")
	}
}

// notifyListener is a stand-in for systemd's notification socket that
// passes on the state notifications (READY=1, STOPPING=1) and leaves out
// the file descriptor store's (sdtest plays that part).
func notifyListener(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if msg := string(buf[:n]); !strings.Contains(msg, "FDSTORE") {
				ch <- msg
			}
		}
	}()
	return path, ch
}

func expectNotification(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("notification %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s notification", want)
	}
}

// messagesInLog lists the event messages of a daemon's stdout.
func messagesInLog(log string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var e struct{ Message string }
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e.Message)
		}
	}
	return out
}

// A bootstrap daemon binds the proxy, activates the release and only then
// exposes the control socket; systemd hears READY=1 after that.
func TestBootstrapActivatesBeforeTheControlSocket(t *testing.T) {
	notify, notes := notifyListener(t)
	dir := t.TempDir()
	rel := filepath.Join(dir, "releases", "b1")
	os.MkdirAll(rel, 0o755)
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{},
		args: []string{"--release-path", rel, "--release-id", "b1", "--revision", "abc123", "--boot-attestation", attestation},
		env:  []string{"NOTIFY_SOCKET=" + notify}}
	d.writeConfig(`processes: [{id: "cron", policy: "singleton", command: "exec FIXTURE"}, ` + webProcess + `]`)
	d.start()
	t.Cleanup(d.cleanup)
	expectNotification(t, notes, "READY=1")
	s := d.status()
	boot, _ := json.Marshal(s["bootstrap"])
	if s["activeReleaseId"] != "b1" || string(boot) != `{"attestation":"`+attestation+`","releaseId":"b1","releasePath":"`+rel+`","revision":"abc123"}` {
		t.Fatalf("status: %v", s)
	}
	if r := d.cli("status"); !regexp.MustCompile(`"application": "itest",\n  "bootstrap": \{\n    "attestation"`).MatchString(r.stdout) {
		t.Fatalf("bootstrap key order:\n%s", r.stdout)
	}
	got := strings.Join(messagesInLog(d.stdout.String()), ",")
	if want := "proxy listening,deploy starting,process started,traffic switched,process started,control socket listening"; got != want {
		t.Fatalf("log order:\n got %s\nwant %s", got, want)
	}
	if _, body := d.get("/release"); body != "b1" {
		t.Fatalf("served %q", body)
	}
	d.shutdown()
	expectNotification(t, notes, "STOPPING=1")
}

func TestBootstrapFailures(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	sock := filepath.Join(dir, "rb.sock")
	rel := filepath.Join(dir, "releases", "b1")
	os.MkdirAll(rel, 0o755)
	// The web process dies at once: the health check fails.
	os.WriteFile(config, []byte(appConfig(dir, `processes: [{id: "web", policy: "proxied", command: "exit 3", port: {from: 20000, to: 20999}, health: {intervalMs: 20, timeoutMs: 500}}]`)), 0o644)
	r := runDaemonOnce(t, dir, nil, "-c", config, "--release-path", rel, "--release-id", "b1", "--revision", "b1")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: ") || !strings.Contains(r.stdout, `"data":{"releaseId":"b1","status":"error"},"message":"bootstrap activation failed"}`) {
		t.Fatalf("failed bootstrap: %+v", r)
	}
	if strings.Contains(r.stdout, "control socket listening") {
		t.Fatal("the control socket was exposed")
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Fatal("a socket file was left behind")
	}
}

// The socket becomes busy while the bootstrap waits for its health check:
// the bootstrap fails and leaves the other daemon's socket alone.
func TestBootstrapNeverRemovesAnotherDaemonsSocket(t *testing.T) {
	dir := t.TempDir()
	rel := filepath.Join(dir, "releases", "b1")
	os.MkdirAll(rel, 0o755)
	config := filepath.Join(dir, "boot.js")
	os.WriteFile(config, []byte(appConfig(dir, `processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: 20000, to: 20999}, health: {startDelayMs: 3000, intervalMs: 20}}]`)), 0o644)
	boot := exec.Command(binary, "daemon", "-c", config, "--release-path", rel, "--release-id", "b1", "--revision", "b1")
	boot.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	bootOut, bootErr := &syncBuffer{}, &syncBuffer{}
	boot.Stdout, boot.Stderr = bootOut, bootErr
	if err := boot.Start(); err != nil {
		t.Fatal(err)
	}
	bootDone := make(chan error, 1)
	go func() { bootDone <- boot.Wait() }()
	t.Cleanup(func() { syscall.Kill(-boot.Process.Pid, syscall.SIGKILL) })
	waitUntil(t, "the bootstrap to start its release", 10*time.Second, func() bool {
		return strings.Contains(bootOut.String(), `"message":"process started"`)
	})
	var webPid int
	for _, line := range strings.Split(bootOut.String(), "\n") {
		var e struct{ Data struct{ Pid int } }
		if json.Unmarshal([]byte(line), &e) == nil && e.Data.Pid != 0 {
			webPid = e.Data.Pid
		}
	}
	// Another daemon takes the same socket path meanwhile.
	other := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "other.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{}}
	other.writeConfig(`processes: [` + webProcess + `]`)
	other.start()
	t.Cleanup(other.cleanup)
	select {
	case <-bootDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the bootstrap did not give up")
	}
	want := `Error: A Rollbridge daemon for application "itest" is already running on ` + other.sock + ` (active release: (no active release)).`
	if boot.ProcessState.ExitCode() != 1 || !strings.HasPrefix(bootErr.String(), want) {
		t.Fatalf("bootstrap: exit %d, stderr %q", boot.ProcessState.ExitCode(), bootErr.String())
	}
	if r := other.cli("status"); r.code != 0 {
		t.Fatalf("the other daemon lost its socket: %+v", r)
	}
	if alive(webPid) {
		t.Fatalf("the failed bootstrap left its web process %d running", webPid)
	}
}

// SIGTERM while the bootstrap waits: everything it started stops, exit 0.
func TestSignalDuringBootstrap(t *testing.T) {
	dir := t.TempDir()
	rel := filepath.Join(dir, "releases", "b1")
	os.MkdirAll(rel, 0o755)
	config := filepath.Join(dir, "rollbridge.js")
	os.WriteFile(config, []byte(appConfig(dir, `processes: [{id: "worker", command: "exec FIXTURE"}, {id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: 20000, to: 20999}, health: {startDelayMs: 60000}}]`)), 0o644)
	boot := exec.Command(binary, "daemon", "-c", config, "--release-path", rel, "--release-id", "b1", "--revision", "b1")
	boot.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, errOut := &syncBuffer{}, &syncBuffer{}
	boot.Stdout, boot.Stderr = out, errOut
	if err := boot.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- boot.Wait() }()
	t.Cleanup(func() { syscall.Kill(-boot.Process.Pid, syscall.SIGKILL) })
	waitUntil(t, "both processes to start", 10*time.Second, func() bool {
		return strings.Count(out.String(), `"message":"process started"`) == 2
	})
	var pids []int
	for _, line := range strings.Split(out.String(), "\n") {
		var e struct{ Data struct{ Pid int } }
		if json.Unmarshal([]byte(line), &e) == nil && e.Data.Pid != 0 {
			pids = append(pids, e.Data.Pid)
		}
	}
	boot.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop")
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Fatalf("process %d outlived the aborted bootstrap", pid)
		}
	}
	if strings.Contains(out.String(), "bootstrap activation failed") {
		t.Fatalf("an aborted bootstrap is not a failure:\n%s", out.String())
	}
}

// candidate prepares a takeover candidate for release id of d's app.
func (d *testDaemon) candidate(id string) *testDaemon {
	rel := filepath.Join(d.dir, "releases", id)
	os.MkdirAll(rel, 0o755)
	c := &testDaemon{t: d.t, dir: d.dir, config: d.config, sock: d.sock, pids: map[int]bool{},
		args: []string{"--release-path", rel, "--release-id", id, "--revision", id, "--boot-attestation", attestation, "--takeover-owner"}}
	c.ready = func() bool { return strings.Contains(c.stdout.String(), `"message":"control socket listening"`) }
	return c
}

// A Go owner hands its listening sockets to the candidate: under constant
// load no request fails, and a WebSocket open on the owner stays open
// until its client closes it; only then does the owner exit.
func TestGaplessTakeover(t *testing.T) {
	owner := startDaemon(t, `processes: [{id: "cron", policy: "singleton", command: "exec FIXTURE -exclusive CRONLOCK"}, `+webProcess+`]`)
	lock := filepath.Join(owner.dir, "cron.lock")
	owner.writeConfig(strings.ReplaceAll(`processes: [{id: "cron", policy: "singleton", command: "exec FIXTURE -exclusive CRONLOCK"}, `+webProcess+`]`, "CRONLOCK", lock))
	owner.deploy("v1")
	ws, hello := owner.openWebSocket()
	defer ws.Close()
	if hello != "hello v1" {
		t.Fatalf("greeting %q", hello)
	}
	tr := startTraffic("http://127.0.0.1:"+strconv.Itoa(owner.port), mixedClients(4, "/release")...)
	tr.waitFor(t, "traffic to flow", 50)
	cand := owner.candidate("v2")
	cand.start()
	t.Cleanup(cand.cleanup)
	owner.handedOver = true
	cand.port = owner.port
	// The candidate now answers on the same socket and port.
	s := cand.status()
	if s["activeReleaseId"] != "v2" || s["bootstrap"].(map[string]any)["releaseId"] != "v2" || s["proxy"].(map[string]any)["port"] != float64(owner.port) {
		t.Fatalf("candidate status: %v", s)
	}
	waitUntil(t, "requests to reach v2", 10*time.Second, func() bool {
		_, body := cand.get("/release")
		return body == "v2"
	})
	tr.waitFor(t, "more traffic through the candidate", 50)
	if f := tr.stop(); len(f) != 0 {
		t.Fatalf("%d of %d requests failed across the takeover; first: %v", len(f), int64(len(f))+tr.ok.Load(), f[0].err)
	}
	// The owner keeps the open WebSocket.
	io.WriteString(ws, "still here\n")
	if line, err := ws.r.ReadString('\n'); line != "still here\n" {
		t.Fatalf("the WebSocket through the retired owner: %q %v", line, err)
	}
	select {
	case <-owner.exited:
		t.Fatal("the owner exited while a WebSocket was open")
	default:
	}
	if data, _ := os.ReadFile(lock + ".log"); len(data) > 0 {
		t.Fatalf("the singletons overlapped: %s", data)
	}
	ws.Close()
	select {
	case <-owner.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the retired owner did not exit")
	}
	if owner.exitErr != nil {
		t.Fatalf("owner exit: %v\n%s", owner.exitErr, owner.stderr.String())
	}
	owner.assertNothingLeft()
	msgs := strings.Join(messagesInLog(owner.stdout.String()), ",")
	if !strings.Contains(msgs, "external owner retired") {
		t.Fatalf("owner log: %s", msgs)
	}
	cand.shutdown()
}

// An owner that does not know handoff (the Node.js rollbridge) frees its
// socket and port; the candidate then binds them itself.
func TestTakeoverFromAnOwnerWithoutHandoff(t *testing.T) {
	dir := t.TempDir()
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{}}
	d.writeConfig(`processes: [` + webProcess + `]`)
	ln, err := net.Listen("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	var retired atomic.Value
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			if strings.Contains(line, "retire-owner") {
				retired.Store(line)
				ln.Close() // the reference frees the socket path before it replies
				io.WriteString(c, `{"status":"success","message":"owner retired"}`+"\n")
				c.Close()
				return
			}
			io.WriteString(c, `{"status":"success","activeReleaseId":"v1","application":"itest","proxy":{"host":"127.0.0.1","port":1,"upstreamHost":"127.0.0.1"}}`+"\n")
			c.Close()
		}
	}()
	cand := d.candidate("v2")
	cand.start()
	t.Cleanup(cand.cleanup)
	if got, _ := retired.Load().(string); got != `{"attestation":"`+attestation+`","command":"retire-owner","handoff":true}`+"\n" {
		t.Fatalf("retire request %q", got)
	}
	s := cand.status()
	cand.port = int(s["proxy"].(map[string]any)["port"].(float64))
	if _, body := cand.get("/release"); body != "v2" || s["activeReleaseId"] != "v2" {
		t.Fatalf("candidate: %q %v", body, s)
	}
	cand.shutdown()
}

// A candidate that cannot finish stops what it started, exits 1 and
// leaves the owner serving.
func TestFailedTakeoverLeavesTheOwner(t *testing.T) {
	owner := startDaemon(t, `processes: [{id: "web", policy: "proxied", command: "test ! -e {{releasePath}}/broken && exec FIXTURE -listen", port: {from: 20000, to: 20999}, health: {intervalMs: 20, timeoutMs: 1000}}]`)
	owner.deploy("v1")
	rel := filepath.Join(owner.dir, "releases", "v2")
	os.MkdirAll(rel, 0o755)
	os.WriteFile(filepath.Join(rel, "broken"), nil, 0o644)
	r := runDaemonOnce(t, owner.dir, nil, "-c", owner.config, "--release-path", rel, "--release-id", "v2", "--revision", "v2", "--boot-attestation", attestation, "--takeover-owner")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: takeover failed: ") || !strings.Contains(r.stdout, `"data":{"releaseId":"v2","status":"error"},"message":"bootstrap activation failed"`) {
		t.Fatalf("candidate: %+v", r)
	}
	if s := owner.status(); s["activeReleaseId"] != "v1" {
		t.Fatalf("owner: %v", s)
	}
	if _, body := owner.get("/release"); body != "v1" {
		t.Fatalf("served %q", body)
	}
	// No owner at all: the candidate gives up and stops its processes.
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	os.WriteFile(config, []byte(appConfig(dir, `processes: [`+webProcess+`]`)), 0o644)
	os.MkdirAll(filepath.Join(dir, "r"), 0o755)
	r = runDaemonOnce(t, dir, nil, "-c", config, "--release-path", filepath.Join(dir, "r"), "--release-id", "r", "--revision", "r", "--boot-attestation", attestation, "--takeover-owner")
	if r.code != 1 || r.stderr != "Error: takeover failed: connect ENOENT "+filepath.Join(dir, "rb.sock")+"\n" {
		t.Fatalf("no owner: %+v", r)
	}
	var pid int
	for _, line := range strings.Split(r.stdout, "\n") {
		var e struct{ Data struct{ Pid int } }
		if json.Unmarshal([]byte(line), &e) == nil && e.Data.Pid != 0 {
			pid = e.Data.Pid
		}
	}
	if pid == 0 || alive(pid) {
		t.Fatalf("the candidate's web process (%d) is still running", pid)
	}
}

// A takeover whose config moved the proxy binds the configured port
// instead of keeping the owner's.
func TestTakeoverWithAMovedProxyPort(t *testing.T) {
	oldPort, newPort := freePort(t), freePort(t)
	owner := startDaemon(t, fmt.Sprintf(`proxy: {port: %d, drainTimeoutMs: 200}, processes: [`+webProcess+`]`, oldPort))
	owner.deploy("v1")
	owner.writeConfig(fmt.Sprintf(`proxy: {port: %d, drainTimeoutMs: 200}, processes: [`+webProcess+`]`, newPort))
	cand := owner.candidate("v2")
	cand.start()
	t.Cleanup(cand.cleanup)
	owner.handedOver = true
	s := cand.status()
	if s["proxy"].(map[string]any)["port"] != float64(newPort) {
		t.Fatalf("candidate proxy: %v", s["proxy"])
	}
	cand.port = newPort
	if _, body := cand.get("/release"); body != "v2" {
		t.Fatalf("served %q on the new port", body)
	}
	select {
	case <-owner.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the retired owner did not exit")
	}
	cand.shutdown()
}

// TestSafeIdentifierAndAttestation pins the edges of the bootstrap
// identifier and attestation checks.
func TestSafeIdentifierAndAttestation(t *testing.T) {
	for _, c := range []struct {
		id   string
		want bool
	}{
		{"r1", true}, {"A", true}, {"20261126.1_rc-2", true}, {strings.Repeat("a", 200), true},
		{"", false}, {strings.Repeat("a", 201), false}, {".r1", false}, {"-r1", false}, {"_r1", false},
		{"a b", false}, {"a/b", false}, {"r1\n", false}, {"é", false},
	} {
		if got := safeIdentifier(c.id); got != c.want {
			t.Errorf("safeIdentifier(%q) = %v, want %v", c.id, got, c.want)
		}
	}
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, c := range []struct {
		att  string
		want bool
	}{
		{"sha256:" + hex, true},
		{"sha256:" + hex[:63], false}, {"sha256:" + hex + "0", false}, {"sha256:" + strings.ToUpper(hex), false},
		{"SHA256:" + hex, false}, {hex, false}, {"sha256:" + hex[:63] + "g", false}, {"sha256:" + hex + "\n", false},
	} {
		if got := engine.CanonicalAttestation(c.att); got != c.want {
			t.Errorf("CanonicalAttestation(%q) = %v, want %v", c.att, got, c.want)
		}
	}
}
