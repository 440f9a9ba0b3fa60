package proxy

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The two ways a request reaches the application: without a body over
// the proxy's own connection pool, with a body through net/http's
// Transport.
var bothPaths = []struct{ name, req string }{
	{"without body", "GET /a HTTP/1.1\r\nHost: app\r\n\r\n"},
	{"with body", "POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\n\r\nbody"},
}

// An application that answers 101 to a request that asked for no upgrade
// and then writes more: the client gets 502, the connection is closed at
// once, and what the application wrote afterwards never reaches the next
// client.
func TestUnrequested101ClosesTheConnection(t *testing.T) {
	for _, path := range bothPaths {
		t.Run(path.name, func(t *testing.T) {
			var firstClosed atomic.Bool
			b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
				if b.readRequest(c, br) == nil {
					return
				}
				if n == 1 {
					// Switch, then act as a tunnel: the next bytes that
					// arrive get client A's data, dressed as a response.
					io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: tunnel\r\n\r\n")
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					buf := make([]byte, 1)
					if _, err := br.Read(buf); err != nil {
						if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
							firstClosed.Store(true)
						}
						return
					}
					answer(c, "data for client A")
					untilClosed(c, br, 5*time.Second)
					return
				}
				for {
					answer(c, "for client B")
					if b.readRequest(c, br) == nil {
						return
					}
				}
			})
			_, addr, errs := proxyTo(t, b)
			if code, body := send(t, addr, path.req); code != 502 || body != "Bad gateway\n" {
				t.Fatalf("client A: %d %q, want 502", code, body)
			}
			if code, body := send(t, addr, "GET /b HTTP/1.1\r\nHost: app\r\n\r\n"); code != 200 || body != "for client B" {
				t.Fatalf("client B: %d %q", code, body)
			}
			waitUntil(t, firstClosed.Load)
			if e := errs.all(); len(e) != 1 || !strings.Contains(e[0], "101") {
				t.Fatalf("proxy errors %q", e)
			}
		})
	}
}

// endlessHeader answers with a status line and then header lines until
// the proxy closes the connection; it reports how many bytes it wrote.
func endlessHeader(written *atomic.Int64, done chan<- struct{}) func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
	return func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
		defer close(done)
		if b.readRequest(c, br) == nil {
			return
		}
		line := []byte("X-Pad: " + strings.Repeat("a", 1016) + "\r\n") // 1 KiB
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for {
			k, err := c.Write(line)
			written.Add(int64(k))
			if err != nil {
				return
			}
		}
	}
}

// An endless response header ends with 502 after 1 MiB, quickly, with
// the connection closed and the proxy's memory bounded.
func TestEndlessResponseHeader(t *testing.T) {
	for _, path := range bothPaths {
		t.Run(path.name, func(t *testing.T) {
			var written atomic.Int64
			done := make(chan struct{})
			b := newRawBackend(t, endlessHeader(&written, done))
			_, addr, errs := proxyTo(t, b)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			code, body := send(t, addr, path.req)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if code != 502 || body != "Bad gateway\n" {
				t.Fatalf("%d %q after %v, want 502", code, body, elapsed)
			}
			select {
			case <-done: // the proxy closed the connection: the write failed
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream connection is still open")
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("502 after %v; the application wrote %d KiB; the test process allocated %d KiB meanwhile", elapsed.Round(time.Millisecond), written.Load()>>10, alloc>>10)
			if alloc > 24<<20 {
				t.Fatalf("the proxy allocated %d MiB for one response header", alloc>>20)
			}
			if e := errs.all(); len(e) != 1 || !strings.Contains(e[0], "1048576 bytes") {
				t.Fatalf("proxy errors %q", e)
			}
		})
	}
}

// header builds a response header of about size bytes.
func header(status string, size int) string {
	var s strings.Builder
	s.WriteString("HTTP/1.1 " + status + "\r\n")
	for s.Len() < size-1100 {
		s.WriteString("X-Pad: " + strings.Repeat("b", 1000) + "\r\n")
	}
	return s.String()
}

// The limits on what comes before a response's body: 1 MiB of header
// (on the pooled path counting the informational responses before the
// final one), and at most 5 informational responses.
func TestResponseHeaderLimits(t *testing.T) {
	const final = "Content-Length: 2\r\n\r\nok"
	cases := []struct {
		name     string
		response string
		paths    []int // indexes into bothPaths
		want     int
	}{
		{"900 KiB header", header("200 OK", 900<<10) + final, []int{0, 1}, 200},
		{"1.1 MiB header", header("200 OK", 1100<<10) + final, []int{0, 1}, 502},
		{"5 informational", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", 5) + "HTTP/1.1 200 OK\r\n" + final, []int{0, 1}, 200},
		{"6 informational", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\n" + final, []int{0, 1}, 502},
		{"3 x 400 KiB informational", strings.Repeat(header("103 Early Hints", 400<<10)+"\r\n", 3) + "HTTP/1.1 200 OK\r\n" + final, []int{0}, 502},
	}
	for _, tc := range cases {
		for _, i := range tc.paths {
			path := bothPaths[i]
			t.Run(tc.name+" "+path.name, func(t *testing.T) {
				b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
					for b.readRequest(c, br) != nil {
						if _, err := io.WriteString(c, tc.response); err != nil {
							return
						}
					}
				})
				_, addr, _ := proxyTo(t, b)
				code, body := send(t, addr, path.req)
				if code != tc.want {
					t.Fatalf("%d %q, want %d", code, body, tc.want)
				}
				if code == 502 {
					waitUntil(t, func() bool { return b.open.Load() == 0 })
				}
			})
		}
	}
}

// A status the proxy cannot pass on (below 100, or four digits) is a 502,
// not a crash, and the connection that carried it is closed.
func TestInvalidStatusCode(t *testing.T) {
	for _, status := range []string{"042 Odd", "000 Zero", "1000 Big", "20 Short"} {
		for _, path := range bothPaths {
			t.Run(status+" "+path.name, func(t *testing.T) {
				closed := make(chan bool, 1)
				b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
					if b.readRequest(c, br) == nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 "+status+"\r\nContent-Length: 0\r\n\r\n")
					closed <- untilClosed(c, br, 5*time.Second)
				})
				_, addr, errs := proxyTo(t, b)
				if code, body := send(t, addr, path.req); code != 502 || body != "Bad gateway\n" {
					t.Fatalf("%d %q, want 502", code, body)
				}
				if !<-closed {
					t.Fatal("the connection that carried the invalid status is still open")
				}
				if e := errs.all(); len(e) != 1 {
					t.Fatalf("proxy errors %q", e)
				}
			})
		}
	}
}

// CONNECT is answered 405 by the proxy and never reaches the application.
func TestConnectIsRefused(t *testing.T) {
	b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
		for b.readRequest(c, br) != nil {
			answer(c, "tunnel")
		}
	})
	_, addr, errs := proxyTo(t, b)
	raw := rawRequest(t, addr, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01\x00\x05hello")
	if !strings.HasPrefix(raw, "HTTP/1.1 405 Method Not Allowed\r\n") || !strings.Contains(raw, "\r\nConnection: close\r\n") ||
		!strings.HasSuffix(raw, "\r\n\r\nCONNECT is not supported\n") {
		t.Fatalf("CONNECT answered %q", raw)
	}
	if n := b.accepted.Load(); n != 0 {
		t.Fatalf("CONNECT reached the application (%d connections)", n)
	}
	if e := errs.all(); len(e) != 0 {
		t.Fatalf("proxy errors %q", e)
	}
}

// A WebSocket handshake that the application answers with a switch to
// another protocol is dropped without an answer (as every failed upgrade
// is), and the application's connection is closed at once.
func TestSwitchToAnotherProtocolIsRefused(t *testing.T) {
	closed := make(chan bool, 1)
	b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
		if b.readRequest(c, br) == nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
		closed <- untilClosed(c, br, 5*time.Second)
	})
	_, addr, errs := proxyTo(t, b)
	got := rawRequest(t, addr, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if got != "" {
		t.Fatalf("the handshake was answered %q", got)
	}
	if !<-closed {
		t.Fatal("the application's connection is still open")
	}
	if e := errs.all(); len(e) != 1 || e[0] != `upstream switched to protocol "h2c" when "websocket" was asked for` {
		t.Fatalf("proxy errors %q", e)
	}
}
