package sdnotify

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stuckManager points NOTIFY_SOCKET at a manager socket nobody reads
// and sets a 200ms send timeout, both until the test ends.
func stuckManager(t *testing.T) {
	path := t.TempDir() + "/stuck.sock"
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	saved := sendTimeout
	sendTimeout = 200 * time.Millisecond
	t.Cleanup(func() { sendTimeout = saved })
}

// A manager that stops reading fills its socket's queue; sending must then
// fail after the send timeout rather than hang the daemon.
func TestSendToStuckManagerTimesOut(t *testing.T) {
	stuckManager(t)

	done := make(chan error, 1)
	go func() {
		for i := 0; i < 100000; i++ {
			if err := Notify(fmt.Sprintf("STATUS=%d", i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "did not take the message within 200ms") {
			t.Fatalf("got %v, want the send timeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Notify blocked on a manager that does not read")
	}
}

// A signal interrupts a send that has a timeout (EINTR); the retry must
// not start the timeout again, or signals that come more often than the
// timeout (a child's SIGCHLD, a profiler's SIGPROF) would keep Notify
// blocked for ever.
func TestSendTimeoutHoldsUnderSignals(t *testing.T) {
	stuckManager(t)

	// The sends run on one thread, so the signals reach the blocked send.
	thread := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		thread <- unix.Gettid()
		for i := 0; ; i++ {
			if err := Notify(fmt.Sprintf("STATUS=%d", i)); err != nil {
				done <- err
				return
			}
		}
	}()
	tid := <-thread
	giveUp := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if !strings.Contains(err.Error(), "did not take the message within 200ms") {
				t.Fatalf("got %v, want the send timeout", err)
			}
			return
		case <-tick.C:
			// SIGURG is the Go runtime's own preemption signal: handled, harmless.
			_ = unix.Tgkill(os.Getpid(), tid, unix.SIGURG)
		case <-giveUp:
			err := <-done // without signals the send times out
			t.Fatalf("Notify was still blocked after 10s of signals every 20ms (a 200ms send timeout); then: %v", err)
		}
	}
}
