package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/runtime"
)

// slowDaemon listens on a control socket and answers every request line
// with reply after delay (never, when delay < 0).
func slowDaemon(t *testing.T, delay time.Duration, reply string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rb.sock")
	fakeControl(t, path, func(string) (string, bool) {
		if delay < 0 {
			return "", false
		}
		time.Sleep(delay)
		return reply, true
	})
	return path
}

// sleeper starts a process that stands for a managed process still
// stopping.
func sleeper(t *testing.T) stoppingProcess {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	start, ok := runtime.StartTime(cmd.Process.Pid)
	if !ok {
		t.Fatal("no start time")
	}
	return stoppingProcess{id: "worker#1", release: "v2", pid: cmd.Process.Pid, start: start}
}

// A shutdown that takes longer than the config's bound ends with an
// error that names what is still running, instead of hanging.
func TestStopWaitGivesUpAfterTheBound(t *testing.T) {
	p := sleeper(t)
	gone := stoppingProcess{id: "web", release: "v2", pid: p.pid, start: p.start + 1} // a recycled pid
	var stderr syncBuffer
	w := stopWait{ep: control.Endpoint{Path: slowDaemon(t, -1, "")}, what: "shutdown", bound: 300 * time.Millisecond, bounded: true,
		procs: []stoppingProcess{gone, p}, stderr: &stderr}
	began := time.Now()
	_, err := w.call([]byte(`{"command":"shutdown"}`))
	took := time.Since(began)
	pid := strconv.Itoa(p.pid)
	want := "The daemon did not finish the shutdown within 0.3 s (the longest stop sequence of the config plus a margin). Still running: worker#1 (pid " + pid +
		", release v2). The daemon goes on stopping them in the background; check with \"rollbridge status\" or \"ps -s " + pid + "\"."
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant\n%s", err, want)
	}
	if took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("gave up after %v", took)
	}
	if stderr.String() != "" {
		t.Fatalf("a bounded wait off a terminal printed %q", stderr.String())
	}
	syscall.Kill(-p.pid, syscall.SIGKILL)
	waitUntil(t, "the sleeper to go", 5*time.Second, func() bool { return !p.running() })
	_, err = w.call([]byte(`{"command":"shutdown"}`))
	if err == nil || !strings.HasSuffix(err.Error(), "All of its processes have stopped; it is still finishing the rest (client connections, the state file).") {
		t.Fatalf("with nothing left running: %v", err)
	}
}

// Without a bound (an indefinite graceful stop), the wait says what it
// still waits for, and the reply is printed when it comes.
func TestStopWaitWithoutBoundShowsProgress(t *testing.T) {
	defer func(d, e time.Duration) { progressEvery, pollEvery = d, e }(progressEvery, pollEvery)
	progressEvery, pollEvery = 50*time.Millisecond, 10*time.Millisecond
	p := sleeper(t)
	var stderr syncBuffer
	w := stopWait{ep: control.Endpoint{Path: slowDaemon(t, 400*time.Millisecond, `{"status":"success","message":"shutdown"}`)}, what: "shutdown", procs: []stoppingProcess{p}, stderr: &stderr}
	raw, err := w.call([]byte(`{"command":"shutdown"}`))
	if err != nil || string(raw) != `{"status":"success","message":"shutdown"}` {
		t.Fatalf("reply %q %v", raw, err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "Waiting for the shutdown (0.") ||
		!strings.HasSuffix(lines[0], "s): still running: worker#1 (pid "+strconv.Itoa(p.pid)+", release v2)") {
		t.Fatalf("progress:\n%s", stderr.String())
	}
}

// A stop queued behind another operation has not begun: the bound counts
// from the moment it does (before, the CLI gave up while the stop still
// waited its turn, and the daemon then dropped it as abandoned).
func TestStopWaitBoundStartsWhenTheStopBegins(t *testing.T) {
	defer func(d time.Duration) { pollEvery = d }(pollEvery)
	pollEvery = 20 * time.Millisecond
	var begun atomic.Bool
	time.AfterFunc(600*time.Millisecond, func() { begun.Store(true) })
	var stderr syncBuffer
	w := stopWait{ep: control.Endpoint{Path: slowDaemon(t, -1, "")}, what: "stop of release v1", bound: 300 * time.Millisecond, bounded: true,
		stderr: &stderr, begun: begun.Load}
	sent := time.Now()
	_, err := w.call([]byte(`{"command":"stop","releaseId":"v1"}`))
	if took := time.Since(sent); err == nil || took < 850*time.Millisecond {
		t.Fatalf("gave up after %v (the stop began after 600 ms, the bound is 300 ms): %v", took, err)
	}
	if !strings.HasPrefix(err.Error(), "The daemon did not finish the stop of release v1 within 0.3 s") {
		t.Fatalf("error: %v", err)
	}
}

func TestReleaseView(t *testing.T) {
	status := []byte(`{"releases":[{"releaseId":"v1","state":"stopped","stoppedAt":"2026-12-06T07:00:00.000Z"},{"releaseId":"v2","state":"active"}]}`)
	if v := releaseView(status, "v1"); v != (releaseSnapshot{"stopped", "2026-12-06T07:00:00.000Z"}) {
		t.Errorf("v1: %+v", v)
	}
	if v := releaseView(status, "v2"); v != (releaseSnapshot{"active", ""}) {
		t.Errorf("v2: %+v", v)
	}
	if v := releaseView(status, "v3"); v.state != "stopped" {
		t.Errorf("a release status no longer lists: %+v", v)
	}
	if v := releaseView([]byte("garbage"), "v1"); v.state != "stopped" {
		t.Errorf("an unreadable status: %+v", v)
	}
}

// A queued stop has begun once the daemon's operations command shows it
// running for this process; a daemon without that command is judged by
// the release's state in its status.
func TestStopBegun(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	stopping := releaseSnapshot{"draining", ""}
	for _, c := range []struct {
		name, operations, status string
		want                     bool
	}{
		{"running for this process", `{"running":{"clientPid":` + me + `,"command":"stop"},"queued":[]}`, "", true},
		{"queued behind another", `{"running":{"clientPid":1,"command":"deploy"},"queued":[{"clientPid":` + me + `,"command":"stop"}]}`, "", false},
		{"nothing running", `{"running":null,"queued":[]}`, "", false},
		{"no operations command, release not stopped yet", `{"status":"error","error":"Unknown command: operations"}`, `{"releases":[{"releaseId":"v1","state":"draining"}]}`, false},
		{"no operations command, release stopped", `{"status":"error","error":"Unknown command: operations"}`, `{"releases":[{"releaseId":"v1","state":"stopped"}]}`, true},
	} {
		sock := filepath.Join(t.TempDir(), "rb.sock")
		fakeControl(t, sock, func(line string) (string, bool) {
			if strings.Contains(line, `"status"`) && !strings.Contains(line, "operations") {
				return c.status, true
			}
			return c.operations, true
		})
		if got := stopBegun(control.Endpoint{Path: sock}, "v1", stopping); got != c.want {
			t.Errorf("%s: begun %v, want %v", c.name, got, c.want)
		}
	}
}
