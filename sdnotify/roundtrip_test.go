package sdnotify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/sdnotify/sdtest"
	"golang.org/x/sys/unix"
)

// lastStatus returns the value of the last STATUS= notification.
func lastStatus(t *testing.T, m *sdtest.Manager) string {
	t.Helper()
	var status string
	for _, n := range m.Notifications() {
		if v, ok := strings.CutPrefix(n, "STATUS="); ok {
			status = v
		}
	}
	if status == "" {
		t.Fatalf("no STATUS= among %q", m.Notifications())
	}
	return status
}

// killByPidfd kills pid through a pidfd opened now, so a recycled pid is
// never signalled later.
func killByPidfd(t *testing.T, pid int) {
	t.Helper()
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd for %d: %v", pid, err)
	}
	t.Cleanup(func() {
		unix.PidfdSendSignal(pfd, unix.SIGKILL, nil, 0)
		unix.Close(pfd)
	})
}

// TestStoreListenRoundTripAcrossRestart is the crash-restart cycle the
// daemon relies on: a first process stores a TCP listener and the read end
// of an app's output pipe, is SIGKILLed, and the process the harness starts
// next gets both back through Listen: it accepts the connection made while
// nobody accepted and reads the line the app wrote before the restart.
func TestStoreListenRoundTripAcrossRestart(t *testing.T) {
	m, err := sdtest.NewManager(t.TempDir(), 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var stderr1 bytes.Buffer
	first, err := m.Start(exe, nil, append(os.Environ(), childVars("first")...), io.Discard, &stderr1)
	if err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Wait() }()
	t.Cleanup(func() {
		first.Process.Signal(syscall.SIGKILL)
		<-firstDone
	})
	if err := m.WaitReady(ctx); err != nil {
		t.Fatalf("%v (first child's stderr: %s)", err, stderr1.String())
	}
	addr, appPid, ok := strings.Cut(lastStatus(t, m), " ")
	if !ok {
		t.Fatalf("first child's STATUS=%q", lastStatus(t, m))
	}
	pid, err := strconv.Atoi(appPid)
	if err != nil {
		t.Fatal(err)
	}
	killByPidfd(t, pid)
	if got, want := strings.Join(m.Names(), ","), "proxy,out-app"; got != want {
		t.Fatalf("store holds %s, want %s", got, want)
	}

	// The crash: the first process dies without closing anything itself.
	first.Process.Signal(syscall.SIGKILL)
	if err := <-firstDone; err == nil {
		t.Fatal("first child exited cleanly, want killed")
	}
	firstDone <- nil // for the cleanup

	// A client connects while nobody accepts: only the backlog of the
	// stored listener can take it.
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s while the daemon is down: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		t.Fatal(err)
	}

	second := m.Command(exe)
	second.Env = append(second.Env, childVars("second")...)
	var stderr2 bytes.Buffer
	second.Stderr = &stderr2
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range second.ExtraFiles {
		f.Close()
	}
	secondDone := make(chan error, 1)
	go func() { secondDone <- second.Wait() }()
	t.Cleanup(func() {
		second.Process.Signal(syscall.SIGKILL)
		<-secondDone
	})

	reply, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read the reply: %v (second child's stderr: %s)", err, stderr2.String())
	}
	if want := fmt.Sprintf("pong %d\n", second.Process.Pid); string(reply) != want {
		t.Fatalf("reply %q, want %q (second child's stderr: %s)", reply, want, stderr2.String())
	}
	if err := m.WaitReady(ctx); err != nil {
		t.Fatalf("%v (second child's stderr: %s)", err, stderr2.String())
	}
	var rep secondReport
	if err := json.Unmarshal([]byte(lastStatus(t, m)), &rep); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rep.Names, ","); got != "out-app,proxy" {
		t.Errorf("Listen names %s, want out-app,proxy", got)
	}
	if rep.ListenAddr != addr {
		t.Errorf("restored listener is on %s, want %s", rep.ListenAddr, addr)
	}
	if rep.Request != "ping\n" {
		t.Errorf("request read by the restarted process %q, want %q", rep.Request, "ping\n")
	}
	if rep.PipeLine != "written before the restart\n" {
		t.Errorf("pipe gave %q, want the app's line", rep.PipeLine)
	}
	if len(rep.Env) != 0 || rep.ChildSawEnv != "" {
		t.Errorf("LISTEN_ variables after Listen: %q, seen by a child: %q; want none", rep.Env, rep.ChildSawEnv)
	}
	if len(rep.NoCloexec) != 0 {
		t.Errorf("passed descriptors %v lack FD_CLOEXEC", rep.NoCloexec)
	}
	select {
	case err := <-secondDone:
		if err != nil {
			t.Fatalf("second child: %v (stderr: %s)", err, stderr2.String())
		}
		secondDone <- nil
	case <-ctx.Done():
		t.Fatal("second child did not exit")
	}
}
