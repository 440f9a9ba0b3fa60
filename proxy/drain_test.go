package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// keepAliveClient has answered one request and keeps its connection.
type keepAliveClient struct {
	c  net.Conn
	br *bufio.Reader
}

func newKeepAliveClient(t *testing.T, addr string) *keepAliveClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	k := &keepAliveClient{c: c, br: bufio.NewReader(c)}
	if resp := k.get(t); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %d, close %v", resp.StatusCode, resp.Close)
	}
	return k
}

// get sends one request and reads the whole answer.
func (k *keepAliveClient) get(t *testing.T) *http.Response {
	t.Helper()
	k.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "ok" {
		t.Fatalf("body %q %v", body, err)
	}
	return resp
}

// closedBy waits for the proxy to close the connection and returns when
// it saw that happen.
func (k *keepAliveClient) closedAt(t *testing.T) time.Time {
	t.Helper()
	k.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := k.br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("expected the proxy to close the connection, got %d bytes, %v", n, err)
	}
	return time.Now()
}

// A draining proxy does not close idle keep-alive connections at once
// (that races the client's next request): a request that arrives on one
// within the grace period is answered in full with Connection: close; a
// connection that stays idle is closed after the grace period; Drain
// returns once every connection is gone.
func TestDrainAnswersRequestsOnIdleKeepAliveConnections(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p, ln := servingProxy(t, u)
	early := newKeepAliveClient(t, ln.Addr().String())
	late := newKeepAliveClient(t, ln.Addr().String())
	silent := newKeepAliveClient(t, ln.Addr().String())

	ln.Close() // as the retiring owner does: the listener lives on in its successor
	start := time.Now()
	drained := make(chan error, 1)
	go func() { drained <- p.Drain(30 * time.Second) }()

	for _, k := range []struct {
		client *keepAliveClient
		after  time.Duration
	}{{early, 100 * time.Millisecond}, {late, 300 * time.Millisecond}} {
		// The scenario's pacing: the client was idle this long into the drain.
		time.Sleep(time.Until(start.Add(k.after)))
		resp := k.client.get(t)
		if resp.StatusCode != 200 || !resp.Close {
			t.Fatalf("a request %v into the drain: %d, Connection: close %v", k.after, resp.StatusCode, resp.Close)
		}
		k.client.closedAt(t)
	}
	closed := silent.closedAt(t)
	if idle := closed.Sub(start); idle < drainIdleGrace {
		t.Fatalf("an idle connection was closed %v into the drain, before the grace of %v", idle, drainIdleGrace)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return once every connection was gone")
	}
	if !p.idle() {
		t.Fatal("Drain returned with connections open")
	}
}

// The grace period for idle connections never outlasts the drain.
func TestDrainEndsIdleConnectionsAtItsDeadline(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p, ln := servingProxy(t, u)
	k := newKeepAliveClient(t, ln.Addr().String())
	ln.Close()
	start := time.Now()
	if err := p.Drain(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= drainIdleGrace {
		t.Fatalf("a 200 ms drain took %v", took)
	}
	k.closedAt(t)
}

// A WebSocket handshake answered while the proxy drains is a valid 101:
// the Connection: close of plain answers must not join its Connection:
// Upgrade.
func TestDrainKeepsWebSocketHandshakesIntact(t *testing.T) {
	closeUpstream := make(chan struct{})
	echo := wsUpstream(t, closeUpstream)
	t.Cleanup(func() { close(closeUpstream) }) // before the upstream closes
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			echo.Config.Handler.ServeHTTP(w, r)
			return
		}
		io.WriteString(w, "ok")
	})
	p, ln := servingProxy(t, u)
	k := newKeepAliveClient(t, ln.Addr().String())
	ln.Close()
	go p.Drain(30 * time.Second)
	waitUntil(t, p.draining.Load)
	k.c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(k.c, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || len(resp.Header["Connection"]) != 1 || resp.Header.Get("Connection") != "Upgrade" {
		t.Fatalf("handshake while draining: %d, Connection %q", resp.StatusCode, resp.Header["Connection"])
	}
	io.WriteString(k.c, "ping\n")
	if line, err := k.br.ReadString('\n'); line != "ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}
}

// servingProxy serves a proxy on a loopback listener, with u active; the
// caller closes the listener as a retiring owner does.
func servingProxy(t *testing.T, u *upstream) (*Proxy, net.Listener) {
	t.Helper()
	p := New(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Shutdown(0) })
	p.SetActive(u.target(p, "v1"))
	return p, ln
}
