package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawBackend is an application written against the socket, so a test can
// misbehave exactly: serve gets each accepted connection (numbered from 1)
// and returns when it is done with it. It counts the connections it
// accepted and those still open, i.e. not yet closed by the proxy (serve
// functions read until EOF before they return).
type rawBackend struct {
	ln       net.Listener
	accepted atomic.Int64
	open     atomic.Int64
	requests atomic.Int64 // requests read through readRequest

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newRawBackend(t *testing.T, serve func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{ln: ln, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := b.accepted.Add(1)
			b.open.Add(1)
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer b.open.Add(-1)
				defer func() {
					b.mu.Lock()
					delete(b.conns, c)
					b.mu.Unlock()
					c.Close()
				}()
				serve(b, c, bufio.NewReader(c), n)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *rawBackend) target(p *Proxy, id string) *Target {
	return NewTarget(id, "127.0.0.1", b.ln.Addr().(*net.TCPAddr).Port, p)
}

// readRequest reads one request and its body; nil when the proxy closed
// the connection (or sent garbage).
func (b *rawBackend) readRequest(c net.Conn, br *bufio.Reader) *http.Request {
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil
	}
	req.Body = io.NopCloser(strings.NewReader(string(body)))
	b.requests.Add(1)
	return req
}

// untilClosed reads and discards until the proxy closes the connection;
// false when it is still open after the deadline.
func untilClosed(c net.Conn, br *bufio.Reader, limit time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// answer writes a small complete response with a body.
func answer(c net.Conn, body string) error {
	_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	return err
}

// proxyTo serves a proxy on loopback whose active target is b.
func proxyTo(t *testing.T, b *rawBackend) (*Proxy, string, *errorLog) {
	t.Helper()
	p, addr, errs := startProxy(t)
	p.SetActive(b.target(p, "v1"))
	return p, addr, errs
}

// send writes one raw request on a new connection and reads the answer
// (status and body); status 0 when the connection ended without one.
func send(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return sendOn(t, c, bufio.NewReader(c), req)
}

func sendOn(t *testing.T, c net.Conn, br *bufio.Reader, req string) (int, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, err.Error()
	}
	var sent *http.Request // nil reads the answer as one to a GET
	if strings.HasPrefix(req, "HEAD ") {
		sent = &http.Request{Method: http.MethodHead}
	}
	resp, err := http.ReadResponse(br, sent)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 {
		resp, err = http.ReadResponse(br, sent) // informational: the answer follows
	}
	if err != nil {
		return 0, err.Error()
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// clientConns counts the client connections the proxy holds.
func (p *Proxy) clientConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}
