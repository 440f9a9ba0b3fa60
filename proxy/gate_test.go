package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHoldThenRelease: requests that arrive during a hold reach the
// target only after Release, and WaitInFlight waits for the one already
// being forwarded.
func TestHoldThenRelease(t *testing.T) {
	p, addr, _ := startProxy(t)
	slow := make(chan struct{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-slow
		}
		w.Write([]byte(r.URL.Path))
	})
	p.SetActive(u.target(p, "a"))

	var wg sync.WaitGroup
	codes := make([]int, 4)
	wg.Add(1)
	go func() { defer wg.Done(); codes[0], _, _ = get(t, http.DefaultClient, "http://"+addr+"/slow", nil) }()
	waitUntil(t, func() bool { return p.InFlight() == 1 })
	p.Hold()
	for i := 1; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i], _, _ = get(t, http.DefaultClient, "http://"+addr+"/held", nil) }()
	}
	waitUntil(t, func() bool { n, _ := p.Held(); return n == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	open, err := p.WaitInFlight(ctx)
	cancel()
	if open != 1 || err == nil {
		t.Fatalf("WaitInFlight with /slow open = %d, %v", open, err)
	}
	close(slow)
	if open, err := p.WaitInFlight(context.Background()); open != 0 || err != nil {
		t.Fatalf("WaitInFlight = %d, %v", open, err)
	}
	if hits := u.hits.Load(); hits != 1 {
		t.Fatalf("held requests reached the app: %d hits", hits)
	}
	if n := p.Release(); n != 3 {
		t.Fatalf("released %d, want 3", n)
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("request %d: %d", i, c)
		}
	}
}

// dialHeld opens a connection and writes raw (a request, or the start of
// one) on it.
func dialHeld(t *testing.T, addr, raw string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// readAnswer reads one response from br (to a HEAD when head is set).
func readAnswer(t *testing.T, br *bufio.Reader, head bool) (*http.Response, string) {
	t.Helper()
	var req *http.Request
	if head {
		req = &http.Request{Method: http.MethodHead}
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	resp.Body.Close()
	return resp, string(body)
}

func heldCount(p *Proxy) int { n, _ := p.Held(); return n }

// echoPath answers with the request's path.
func echoPath(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
}

// On one connection, requests are answered in the order sent, held or
// not: pipelined ones (net/http reads the next only after answering the
// previous, so one is held) and keep-alive ones sent one after another.
func TestHeldRequestsKeepTheirOrderOnAConnection(t *testing.T) {
	u := echoPath(t)
	p, addr, _ := startProxy(t)
	p.SetActive(u.target(p, "v1"))

	p.Hold()
	c, br := dialHeld(t, addr, "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /p3 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 1 })
	if n := p.Release(); n != 1 {
		t.Fatalf("released %d, want 1", n)
	}
	for _, want := range []string{"/p1", "/p2", "/p3"} {
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 200 || body != want {
			t.Fatalf("pipelined: %d %q, want %q", resp.StatusCode, body, want)
		}
	}
	for _, path := range []string{"/k1", "/k2"} {
		p.Hold()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		waitUntil(t, func() bool { return heldCount(p) == 1 })
		p.Release()
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 200 || body != path {
			t.Fatalf("keep-alive: %d %q, want %q", resp.StatusCode, body, path)
		}
	}
	if got := u.hits.Load(); got != 5 {
		t.Fatalf("the app saw %d requests, want 5", got)
	}
}

// Requests held on many connections are let through in the order they
// arrived, none lost.
func TestReleaseInArrivalOrder(t *testing.T) {
	const n = 40
	u := echoPath(t)
	p, addr, _ := startProxy(t)
	p.SetActive(u.target(p, "v1"))
	var mu sync.Mutex
	var order []string
	p.released = func(r *http.Request) { mu.Lock(); order = append(order, r.URL.Path); mu.Unlock() }

	p.Hold()
	readers := make([]*bufio.Reader, n)
	for i := range n {
		_, readers[i] = dialHeld(t, addr, fmt.Sprintf("GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
		waitUntil(t, func() bool { return heldCount(p) == i+1 })
	}
	if got := p.Release(); got != n {
		t.Fatalf("released %d, want %d", got, n)
	}
	for i, br := range readers {
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 200 || body != fmt.Sprintf("/%d", i) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, path := range order {
		if path != fmt.Sprintf("/%d", i) {
			t.Fatalf("released in the order %v", order)
		}
	}
	if len(order) != n || u.hits.Load() != n {
		t.Fatalf("%d released, %d reached the app, want %d", len(order), u.hits.Load(), n)
	}
	if c := p.Counters(); c.Held != n || c.Released != n {
		t.Fatalf("counters %+v", c)
	}
}

// A release is a decision: a Hold right after it does not hold the
// released requests again, and WaitInFlight after that Hold waits for
// them like for any request already forwarded.
func TestHoldRightAfterReleaseDoesNotTakeBackReleasedRequests(t *testing.T) {
	const n = 5
	gate := make(chan struct{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { <-gate; io.WriteString(w, "ok") })
	p, addr, _ := startProxy(t)
	p.SetActive(u.target(p, "v1"))
	p.Hold()
	readers := make([]*bufio.Reader, n)
	for i := range n {
		_, readers[i] = dialHeld(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	waitUntil(t, func() bool { return heldCount(p) == n })
	if got := p.Release(); got != n {
		t.Fatalf("released %d", got)
	}
	p.Hold()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	open, err := p.WaitInFlight(ctx)
	cancel()
	if open != n || err == nil {
		t.Fatalf("WaitInFlight right after the release = %d, %v; want the %d released requests open", open, err, n)
	}
	waitUntil(t, func() bool { return u.hits.Load() == n })
	if held := heldCount(p); held != 0 {
		t.Fatalf("%d released requests were held again", held)
	}
	close(gate)
	for _, br := range readers {
		if resp, _ := readAnswer(t, br, false); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if open, err := p.WaitInFlight(context.Background()); open != 0 || err != nil {
		t.Fatalf("WaitInFlight = %d, %v", open, err)
	}
}

// A held request whose client goes away leaves the queue, gets no answer
// and never reaches the application, with or without a body (whose
// unread bytes keep net/http from noticing the close).
func TestHeldClientThatLeavesLeavesTheQueue(t *testing.T) {
	for _, c := range []struct {
		name, req string
		halfClose bool
	}{
		{"GET closed", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"POST with its body closed", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", false},
		{"POST with half its body closed", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello", false},
		{"chunked POST closed", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", false},
		{"WebSocket closed", "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
		// A client that only shut down its sending side still reads: it
		// must not be told 200 for a request nobody served.
		{"GET half-closed", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"POST half-closed", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := echoPath(t)
			p, addr, _ := startProxy(t)
			p.SetActive(u.target(p, "v1"))
			p.Hold()
			conn, br := dialHeld(t, addr, c.req)
			waitUntil(t, func() bool { return heldCount(p) == 1 })
			if c.halfClose {
				conn.(*net.TCPConn).CloseWrite()
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				out, err := io.ReadAll(br)
				if err != nil || len(out) != 0 {
					t.Fatalf("the half-closed client read %q (%v), want the connection closed without an answer", out, err)
				}
			} else {
				conn.Close()
			}
			waitUntil(t, func() bool { n, b := p.Held(); return n == 0 && b == 0 })
			if n := p.Release(); n != 0 {
				t.Fatalf("released %d requests of clients that left", n)
			}
			if p.InFlight() != 0 {
				t.Fatalf("in flight %d", p.InFlight())
			}
			// A request after the release reaches the app; the one whose
			// client left never did.
			if code, body := send(t, addr, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n"); code != 200 || body != "/after" {
				t.Fatalf("after: %d %q", code, body)
			}
			if hits := u.hits.Load(); hits != 1 {
				t.Fatalf("the app saw %d requests, want only /after", hits)
			}
			waitUntil(t, func() bool { return p.clientConns() == 0 })
		})
	}
}

// bodyApp answers with the length and SHA-256 of the body it read.
func bodyApp(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
}

// A held POST is forwarded with its body intact after the release; while
// held, its body is not read: a client that trickles it is not cut, and
// one that sends a large body is stopped by TCP's flow control once the
// socket buffers are full.
func TestHeldBodyIsForwardedIntactAndNotReadWhileHeld(t *testing.T) {
	u := bodyApp(t)
	p, addr, _ := startProxy(t)
	p.SetActive(u.target(p, "v1"))

	t.Run("trickled", func(t *testing.T) {
		body := strings.Repeat("0123456789", 30)
		p.Hold()
		c, br := dialHeld(t, addr, fmt.Sprintf("POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body)))
		waitUntil(t, func() bool { return heldCount(p) == 1 })
		for i := 0; i < len(body)/2; i += 10 {
			if _, err := io.WriteString(c, body[i:i+10]); err != nil {
				t.Fatal(err)
			}
		}
		if heldCount(p) != 1 || u.hits.Load() != 0 {
			t.Fatalf("held %d, app hits %d", heldCount(p), u.hits.Load())
		}
		p.Release()
		io.WriteString(c, body[len(body)/2:])
		sum := sha256.Sum256([]byte(body))
		if resp, got := readAnswer(t, br, false); resp.StatusCode != 200 || got != fmt.Sprintf("%d %x", len(body), sum) {
			t.Fatalf("%d %q", resp.StatusCode, got)
		}
	})

	t.Run("large", func(t *testing.T) {
		body := bytes.Repeat([]byte("rollbridge"), 3<<20) // 30 MiB
		hits := u.hits.Load()
		p.Hold()
		c, br := dialHeld(t, addr, fmt.Sprintf("POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body)))
		waitUntil(t, func() bool { return heldCount(p) == 1 })
		// Nothing reads the body: the writes stop when the buffers are
		// full, long before the end. (The deadline is the test's bound,
		// not a wait for something to happen.)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := c.Write(body)
		if err == nil || n >= len(body) {
			t.Fatalf("wrote %d of %d bytes while held (%v): the body was read", n, len(body), err)
		}
		if u.hits.Load() != hits {
			t.Fatal("the app saw the held request")
		}
		p.Release()
		c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(body[n:]); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		if resp, got := readAnswer(t, br, false); resp.StatusCode != 200 || got != fmt.Sprintf("%d %x", len(body), sum) {
			t.Fatalf("%d %q", resp.StatusCode, got)
		}
	})
}
