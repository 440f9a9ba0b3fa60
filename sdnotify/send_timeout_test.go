package sdnotify

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// A manager that stops reading fills its socket's queue; sending must then
// fail after the send timeout rather than hang the daemon.
func TestSendToStuckManagerTimesOut(t *testing.T) {
	path := t.TempDir() + "/stuck.sock"
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() // never read
	t.Setenv("NOTIFY_SOCKET", path)
	saved := sendTimeout
	sendTimeout = 200 * time.Millisecond
	t.Cleanup(func() { sendTimeout = saved })

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
