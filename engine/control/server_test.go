package control

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type blockingHandler struct{ entered, release chan struct{} }

func (h blockingHandler) HandleControl(ctx context.Context, req *Request, conn *Conn) ([]byte, error) {
	h.entered <- struct{}{}
	<-h.release
	return []byte(`{"message":"late"}`), nil
}

// A client that hangs up before its reply is logged as "write EPIPE",
// without the listener's address: the daemon binds its socket under a
// temporary name in a private directory and renames it into place, so
// the address the kernel reports names a path that no longer exists.
func TestConnErrorDoesNotNameTheBindAddress(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, ".rollbridge-private")
	os.Mkdir(private, 0o700)
	tmp := filepath.Join(private, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	final := filepath.Join(dir, "app.sock")
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	os.Remove(private)
	h := blockingHandler{entered: make(chan struct{}, 1), release: make(chan struct{})}
	s := NewServer(h)
	type connErr struct{ code, msg string }
	errs := make(chan connErr, 4)
	s.OnConnError = func(code, msg string) { errs <- connErr{code, msg} }
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	go s.Serve(ln)
	t.Cleanup(func() { release(); s.Close(nil); s.Wait() })

	c, err := net.Dial("unix", final)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(`{"command":"deploy"}` + "\n"))
	c.Close()
	// Gone is asked, as a handler asks it, while the request is handled:
	// before that the connection's reader is still filling the buffer
	// Gone looks at.
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the handler")
	}
	s.mu.Lock()
	var conn *Conn
	for k := range s.conns {
		conn = k
	}
	s.mu.Unlock()
	// Let the reply go out only once the server sees the client gone.
	deadline := time.Now().Add(10 * time.Second)
	for !conn.Gone() {
		if time.Now().After(deadline) {
			t.Fatal("the server never saw the client hang up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	select {
	case e := <-errs:
		if e.code != "EPIPE" || e.msg != "write EPIPE" || strings.Contains(e.msg, private) {
			t.Fatalf("control connection error: code %q, error %q", e.code, e.msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no control connection error was reported")
	}
}
