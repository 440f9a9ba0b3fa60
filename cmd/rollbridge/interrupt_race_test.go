package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"golang.org/x/sys/unix"
)

// queueDaemon is a fake daemon on a control socket that holds every
// deploy in its queue behind a deploy of v1. Once armed, it passes the
// lock to the waiting deploy right after it answers an operations
// request, as a real daemon's lock may pass at any moment: the deploy then
// runs if its client is still connected, and is dropped if the client
// has hung up (what the real daemon does, see acquireFor).
type queueDaemon struct {
	mu     sync.Mutex
	deploy net.Conn
	pid    int // the deploy's client
	armed  bool
	// caught: the look finds the lock passed to the deploy of a client
	// that has gone, in the moment before the daemon drops it (the
	// operations answer shows it running, since after the hang-up).
	caught   bool
	ran      bool
	ranAt    time.Time
	dropped  bool
	answered chan struct{} // one value per answered operations request
}

func startQueueDaemon(t *testing.T, sock string, caught bool) *queueDaemon {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	q := &queueDaemon{answered: make(chan struct{}, 100), caught: caught}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		q.mu.Lock()
		if q.deploy != nil {
			q.deploy.Close()
		}
		q.mu.Unlock()
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				q.serve(t, c)
			}()
		}
	}()
	return q
}

func (q *queueDaemon) serve(t *testing.T, c net.Conn) {
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return
	}
	stamp := func(at time.Time) string { return at.UTC().Format("2006-01-02T15:04:05.000Z") }
	switch {
	case strings.Contains(line, `"command":"deploy"`):
		cred, err := unix.GetsockoptUcred(int(fdOf(t, c)), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			t.Error(err)
		}
		q.mu.Lock()
		q.deploy, q.pid = c, int(cred.Pid)
		q.mu.Unlock()
		return // held: no answer while it waits or "runs"
	case strings.Contains(line, `"command":"follow"`):
		io.WriteString(c, `{"status":"success","following":["events"]}`+"\n"+`{"type":"live"}`+"\n")
		io.Copy(io.Discard, r) // open until the client leaves
	case strings.Contains(line, `"command":"operations"`):
		q.mu.Lock()
		if q.caught && q.armed && q.deploy != nil && !q.ran && !q.dropped && connGone(t, q.deploy) {
			time.Sleep(2 * time.Millisecond) // the lock passes a moment after the hang-up
			fmt.Fprintf(c, `{"status":"success","queued":[],"running":{"clientPid":%d,"command":"deploy","releaseId":"v2","runningMs":0,"since":%q}}`+"\n", q.pid, stamp(time.Now()))
			q.dropped = true
			q.mu.Unlock()
			c.Close()
			return
		}
		since := stamp(time.Now().Add(-time.Second))
		running := `{"clientPid":1,"command":"deploy","releaseId":"v1","runningMs":1000,"since":"` + since + `"}`
		queued := "[]"
		switch {
		case q.ran:
			running = fmt.Sprintf(`{"clientPid":%d,"command":"deploy","releaseId":"v2","runningMs":1,"since":%q}`, q.pid, stamp(q.ranAt))
		case q.deploy != nil && !q.dropped:
			queued = fmt.Sprintf(`[{"clientPid":%d,"command":"deploy","releaseId":"v2","since":%q,"waitingMs":500}]`, q.pid, since)
		}
		io.WriteString(c, `{"status":"success","queued":`+queued+`,"running":`+running+`}`+"\n")
		if q.armed && q.deploy != nil && !q.ran && !q.dropped {
			// The lock passes now.
			if connGone(t, q.deploy) {
				q.dropped = true
			} else {
				q.ran, q.ranAt = true, time.Now()
			}
		}
		q.mu.Unlock()
		select {
		case q.answered <- struct{}{}:
		default:
		}
	default:
		io.WriteString(c, `{"error":"Unknown command","status":"error"}`+"\n")
	}
	c.Close()
}

func fdOf(t *testing.T, c net.Conn) uintptr {
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	raw.Control(func(f uintptr) { fd = f })
	return fd
}

// connGone peeks whether the client closed c, as the daemon does.
func connGone(t *testing.T, c net.Conn) bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(int(fdOf(t, c)), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n == 0 && err == nil || err == unix.ECONNRESET
}

// Ctrl-C on a deploy that waits behind another: whatever the command says
// becomes of it must be what the daemon does. The command hangs up before
// it looks, so a lock that passes while it looks finds its client gone
// and drops the deploy, as the command says. (Looking first, the command
// called "dropped" a deploy the daemon then ran.)
func TestDeployInterruptedWhileQueuedSaysWhatTheDaemonDoes(t *testing.T) {
	t.Run("lock passes during the look", func(t *testing.T) { interruptQueuedDeploy(t, false) })
	// Seen running, but since after the hang-up: dropped all the same.
	t.Run("look sees the lock pass to a gone client", func(t *testing.T) { interruptQueuedDeploy(t, true) })
}

func interruptQueuedDeploy(t *testing.T, caught bool) {
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	if err := os.WriteFile(config, []byte(appConfig(dir, `processes: [`+webProcess+`]`)), 0o644); err != nil {
		t.Fatal(err)
	}
	q := startQueueDaemon(t, filepath.Join(dir, "rb.sock"), caught)
	_, term, seen := recordPTY(t)
	cmd := exec.Command(binary, "deploy", "-c", config, "--release-path", dir, "--release-id", "v2")
	cmd.Stdout, cmd.Stderr = io.Discard, term
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		done <- code
	}()
	t.Cleanup(func() {
		select {
		case code := <-done:
			done <- code
		default:
			cmd.Process.Kill()
		}
	})
	waitTerminal(t, seen, "waiting for deploy v1 (running ")
	// Right after a poll was answered (the next is 100 ms away), so the
	// lock passes at the command's own look after Ctrl-C.
	for len(q.answered) > 0 {
		<-q.answered
	}
	select {
	case <-q.answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the command does not poll the operations")
	}
	q.mu.Lock()
	q.armed = true
	q.mu.Unlock()
	syscall.Kill(cmd.Process.Pid, syscall.SIGINT)
	if code := exitOf(t, "the interrupted deploy", done); code != interruptedExit {
		t.Fatalf("exit %d, want %d", code, interruptedExit)
	}
	out := readBack(t, term, seen)
	q.mu.Lock()
	ran, dropped := q.ran, q.dropped
	q.mu.Unlock()
	saysDropped := strings.Contains(out, "Interrupted: the deploy of v2 was waiting for deploy v1 and is dropped; the daemon will not run it.\r\n")
	saysGoesOn := strings.Contains(out, "Interrupted: the deploy of v2 goes on in the daemon")
	t.Logf("daemon: ran %v, dropped %v; command: dropped %v, goes on %v", ran, dropped, saysDropped, saysGoesOn)
	if saysDropped == saysGoesOn || saysDropped && ran || saysGoesOn && !ran {
		t.Fatalf("the daemon ran the deploy: %v; the command said:\n%s", ran, out)
	}
}

// The hint after Ctrl-C quotes a config path a shell would split, so it
// can be copied as it is.
func TestInterruptHintQuotesTheConfigPath(t *testing.T) {
	dir := t.TempDir()
	a, b := net.Pipe()
	defer b.Close()
	var out strings.Builder
	p := &progress{w: &out, conn: a, done: make(chan struct{}), plan: &jsconfig.Plan{Path: "/srv/my app/rollbridge's.js"}}
	p.plan.Control.Path = filepath.Join(dir, "none.sock") // nothing answers: what was known stands
	p.own.command, p.own.release, p.own.state = "deploy", "v2", opRunning
	p.interrupted()
	want := "\nInterrupted: the deploy of v2 goes on in the daemon; stopping this command does not stop it.\n" +
		`  Follow it with: rollbridge events --follow -c '/srv/my app/rollbridge'\''s.js'` + "\n"
	if out.String() != want {
		t.Fatalf("got  %q\nwant %q", out.String(), want)
	}
}
