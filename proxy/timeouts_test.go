package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// startProxyWith serves a proxy with opts on a loopback port.
func startProxyWith(t *testing.T, opts Options) (*Proxy, string) {
	t.Helper()
	p := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Shutdown(time.Second) })
	return p, ln.Addr().String()
}

// closedWithin reads from c until the proxy closes it and returns what it
// read and when the close came; it fails the test after limit. A reset
// is a close too: a proxy that closes a socket holding bytes it has not
// read (a trickling client's latest) sends one instead of a FIN.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) (string, time.Time) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	out, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("still open after %v (%v), read %q", limit, err, out)
	}
	return string(out), time.Now()
}

func TestDefaultClientTimeouts(t *testing.T) {
	p := New(Options{})
	if p.server.ReadHeaderTimeout != 10*time.Second || p.server.IdleTimeout != 120*time.Second {
		t.Fatalf("read-header timeout %v, idle timeout %v", p.server.ReadHeaderTimeout, p.server.IdleTimeout)
	}
}

// A connection that sends nothing, or trickles its header, is closed
// after the read-header timeout, without an answer.
func TestSlowHeadersAreCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p, addr := startProxyWith(t, Options{ReadHeaderTimeout: timeout, IdleTimeout: time.Minute})
	p.SetActive(u.target(p, "v1"))

	// The server starts the timer when it accepts the connection, which
	// can come before Dial returns here: only the moment before the dial
	// is known to precede it.
	t.Run("silent", func(t *testing.T) {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		out, at := closedWithin(t, c, 10*time.Second)
		if out != "" || at.Sub(start) < timeout {
			t.Fatalf("closed after %v with %q", at.Sub(start), out)
		}
	})
	t.Run("trickling", func(t *testing.T) {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			// One byte every 20 ms, an endless header, until the write fails.
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: app\r\nX-Slow: ")
			for {
				if _, err := c.Write([]byte("a")); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		out, at := closedWithin(t, c, 10*time.Second)
		if out != "" || at.Sub(start) < timeout {
			t.Fatalf("closed after %v with %q", at.Sub(start), out)
		}
	})
	if u.hits.Load() != 0 {
		t.Fatal("a request reached the application")
	}
}

// An idle keep-alive connection is closed after the idle timeout, not
// after the (shorter) read-header timeout; the next request on it then
// has the read-header timeout from its first byte.
func TestIdleKeepAliveTimeout(t *testing.T) {
	// The request must reach the proxy within header of the accept: 300 ms
	// leaves room for a test goroutine that a loaded machine runs late.
	const header, idle = 300 * time.Millisecond, 1200 * time.Millisecond
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p, addr := startProxyWith(t, Options{ReadHeaderTimeout: header, IdleTimeout: idle})
	p.SetActive(u.target(p, "v1"))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// The server starts the idle timer once it has written the answer,
	// which is before the client has read it, so the only instant known
	// to come before that is the moment the request was sent.
	sent := time.Now()
	if code, body := sendOn(t, c, br, "GET / HTTP/1.1\r\nHost: app\r\n\r\n"); code != 200 || body != "ok" {
		t.Fatalf("%d %q", code, body)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = br.ReadByte()
	if err != io.EOF {
		t.Fatalf("expected the proxy to close the idle connection: %v", err)
	}
	if after := time.Since(sent); after < idle {
		t.Fatalf("an idle connection was closed %v after its request was sent, before the idle timeout of %v", after, idle)
	}
}

// A slow request body (an upload) is not cut by the read-header timeout:
// a body trickled over several times that timeout arrives complete.
func TestSlowBodyIsNotCut(t *testing.T) {
	// As above, the header must arrive within timeout of the accept.
	const timeout = 300 * time.Millisecond
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		io.WriteString(w, "got "+string(body))
	})
	p, addr := startProxyWith(t, Options{ReadHeaderTimeout: timeout, IdleTimeout: time.Minute})
	p.SetActive(u.target(p, "v1"))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const body = "0123456789"
	start := time.Now()
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\n")
	for i := range len(body) {
		time.Sleep(timeout * 6 / 10) // the upload's pace: 6 times the timeout in all
		if _, err := io.WriteString(c, body[i:i+1]); err != nil {
			t.Fatalf("the proxy cut the upload after %v: %v", time.Since(start), err)
		}
	}
	code, got := sendOn(t, c, bufio.NewReader(c), "")
	if code != 200 || got != "got "+body || time.Since(start) < 6*timeout {
		t.Fatalf("%d %q after %v", code, got, time.Since(start))
	}
}
