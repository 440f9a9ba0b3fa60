package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// heldDeploys is a daemon whose web process passes its health check only
// while the file ready exists: a deploy runs until the test creates it.
type heldDeploys struct {
	*testDaemon
	t     *testing.T
	ready string
}

func startHeldDeploys(t *testing.T) *heldDeploys {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	// A private window: the web processes answer 503 until ready exists,
	// and another test's web process on their ports would answer 200.
	from, to := privatePorts()
	d := startDaemon(t, fmt.Sprintf(`processes: [{id: "worker", command: "exec FIXTURE"}, {id: "web", policy: "proxied", command: "exec FIXTURE -listen -ready-file %s", port: {from: %d, to: %d}, health: {path: "/ready", intervalMs: 20, timeoutMs: 60000}}]`, ready, from, to))
	h := &heldDeploys{d, t, ready}
	h.setReady(true)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	h.setReady(false)
	return h
}

func (h *heldDeploys) setReady(ready bool) {
	h.t.Helper()
	if !ready {
		os.Remove(h.ready)
		return
	}
	if err := os.WriteFile(h.ready, nil, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// startDeploy starts `deploy` of id with stderr on w (a terminal or a
// pipe); the returned channel gets its exit status.
func (h *heldDeploys) startDeploy(id string, stderr io.Writer) (*exec.Cmd, chan int) {
	h.t.Helper()
	rel := filepath.Join(h.dir, "releases", id)
	if err := os.MkdirAll(rel, 0o755); err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(binary, "deploy", "-c", h.config, "--release-path", rel, "--release-id", id)
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	done, exited := make(chan int, 1), make(chan struct{})
	go func() {
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		done <- code
		close(exited)
	}()
	h.t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	return cmd, done
}

// waitRunning waits until the deploy of id has started its web process.
func (h *heldDeploys) waitRunning(id string) {
	h.t.Helper()
	waitUntil(h.t, "the deploy of "+id+" to start its web process", 10*time.Second, func() bool {
		for _, e := range h.events() {
			data, _ := e["data"].(map[string]any)
			if e["message"] == "process started" && data["releaseId"] == id {
				return true
			}
		}
		return false
	})
}

// rawControl sends one request line to the control socket and returns
// the reply line.
func rawControl(t *testing.T, sock, request string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// waitTerminal waits until the terminal has shown want, and shows what
// it did show when it does not.
func waitTerminal(t *testing.T, seen *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(seen.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the terminal did not show %q within 10 s; it shows:\n%s", want, seen.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exitOf(t *testing.T, what string, done chan int) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not end", what)
		return -1
	}
}

// A deploy that waits behind another says so on the terminal, and shows
// only its own steps, never those of the deploy it waited for.
func TestDeployWaitingBehindAnotherShowsOnlyItsOwnSteps(t *testing.T) {
	h := startHeldDeploys(t)
	_, first := h.startDeploy("v2", io.Discard)
	h.waitRunning("v2")

	_, term, seen := recordPTY(t)
	third, second := h.startDeploy("v3", term)
	thirdPid := third.Process.Pid
	waitTerminal(t, seen, "waiting for deploy v2 (running ")
	// The operations command names both, each with its client's pid.
	ops := rawControl(t, h.sock, `{"command":"operations"}`)
	var got struct {
		Status  string
		Running struct {
			ClientPid int
			Command   string
			ReleaseID string
			RunningMs float64
		}
		Queued []struct {
			ClientPid int
			Command   string
			ReleaseID string
		}
	}
	if err := json.Unmarshal([]byte(ops), &got); err != nil || got.Status != "success" || got.Running.Command != "deploy" || got.Running.ReleaseID != "v2" ||
		got.Running.ClientPid <= 0 || got.Running.RunningMs <= 0 || len(got.Queued) != 1 || got.Queued[0].ReleaseID != "v3" || got.Queued[0].ClientPid != thirdPid {
		t.Errorf("operations: %s", ops)
	}
	h.setReady(true)
	if code := exitOf(t, "deploy v2", first); code != 0 {
		t.Fatalf("deploy v2 exited %d", code)
	}
	if code := exitOf(t, "deploy v3", second); code != 0 {
		t.Fatalf("deploy v3 exited %d", code)
	}
	out := readBack(t, term, seen)
	t.Logf("terminal:\n%s", out)
	for _, want := range []string{"waited ", " s for deploy v2\r\n", "→ deploying v3 (", "started web (pid ", "✓ traffic switched to v3"} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal lacks %q", want)
		}
	}
	for _, not := range []string{"deploying v2", "traffic switched to v2"} {
		if strings.Contains(out, not) {
			t.Errorf("the terminal shows the other deploy's step %q", not)
		}
	}
	if n := strings.Count(out, "health check passed after"); n != 1 {
		t.Errorf("%d passed health checks shown, want only v3's", n)
	}
	if n := strings.Count(out, "started web (pid "); n != 1 {
		t.Errorf("%d web starts shown, want only v3's", n)
	}
}

// A restart that waits behind a deploy shows the wait and its own steps,
// none of the deploy's, also when it runs and ends between two looks at
// the daemon's operations.
func TestRestartWaitingBehindADeploy(t *testing.T) {
	h := startHeldDeploys(t)
	_, first := h.startDeploy("v2", io.Discard)
	h.waitRunning("v2")
	_, term, seen := recordPTY(t)
	cmd := exec.Command(binary, "restart", "-c", h.config, "--process", "worker")
	cmd.Stdout, cmd.Stderr = io.Discard, term
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitTerminal(t, seen, "waiting for deploy v2 (running ")
	h.setReady(true)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if code := exitOf(t, "deploy v2", first); code != 0 {
		t.Fatalf("deploy v2 exited %d", code)
	}
	out := readBack(t, term, seen)
	for _, want := range []string{" s for deploy v2\r\n", "  restarting worker…\r\n", "  worker running again (pid "} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"started worker", "started web", "traffic switched", "deploying"} {
		if strings.Contains(out, not) {
			t.Errorf("the terminal shows the deploy's step %q:\n%s", not, out)
		}
	}
}

// Ctrl-C while the deploy runs: the command says the deploy goes on in
// the daemon and how to follow it, exits 130, and the deploy completes.
func TestDeployInterruptedWhileRunning(t *testing.T) {
	h := startHeldDeploys(t)
	_, term, seen := recordPTY(t)
	cmd, done := h.startDeploy("v2", term)
	waitTerminal(t, seen, "started web (pid ")
	syscall.Kill(cmd.Process.Pid, syscall.SIGINT)
	if code := exitOf(t, "the interrupted deploy", done); code != interruptedExit {
		t.Fatalf("exit %d, want %d", code, interruptedExit)
	}
	for _, want := range []string{
		"Interrupted: the deploy of v2 goes on in the daemon; stopping this command does not stop it.\r\n",
		"  Follow it with: rollbridge events --follow -c " + h.config + "\r\n",
	} {
		waitTerminal(t, seen, want)
	}
	h.setReady(true)
	waitUntil(t, "v2 to become active", 30*time.Second, func() bool { return h.status()["activeReleaseId"] == "v2" })
}

// Ctrl-C while the deploy waits behind another: the command says it is
// dropped, exits 130, and the daemon never runs it.
func TestDeployInterruptedWhileQueued(t *testing.T) {
	h := startHeldDeploys(t)
	_, first := h.startDeploy("v2", io.Discard)
	h.waitRunning("v2")
	_, term, seen := recordPTY(t)
	cmd, done := h.startDeploy("v3", term)
	waitTerminal(t, seen, "waiting for deploy v2 (running ")
	syscall.Kill(cmd.Process.Pid, syscall.SIGINT)
	if code := exitOf(t, "the interrupted deploy", done); code != interruptedExit {
		t.Fatalf("exit %d, want %d", code, interruptedExit)
	}
	want := "Interrupted: the deploy of v3 was waiting for deploy v2 and is dropped; the daemon will not run it.\r\n"
	waitTerminal(t, seen, want)
	h.setReady(true)
	if code := exitOf(t, "deploy v2", first); code != 0 {
		t.Fatalf("deploy v2 exited %d", code)
	}
	waitUntil(t, "the daemon to drop v3", 10*time.Second, func() bool {
		for _, e := range h.events() {
			data, _ := e["data"].(map[string]any)
			if e["message"] == "command failed" && strings.HasPrefix(fmt.Sprint(data["error"]), "The deploy was not run: its client disconnected") {
				return true
			}
		}
		return false
	})
	s := h.status()
	if s["activeReleaseId"] != "v2" || release(s, "v3") != nil {
		t.Fatalf("v3 must never run: active %v, v3 %v", s["activeReleaseId"], release(s, "v3"))
	}
	for _, e := range h.events() {
		if data, _ := e["data"].(map[string]any); e["message"] == "deploy starting" && data["releaseId"] == "v3" {
			t.Fatal("the dropped deploy started")
		}
	}
}
