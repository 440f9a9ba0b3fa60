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
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

// echoProxy serves a proxy on a loopback port with an echoPath upstream
// active.
func echoProxy(t *testing.T) (*upstream, *Proxy, string) {
	t.Helper()
	u := echoPath(t)
	p, addr, _ := startProxy(t)
	p.SetActive(u.target(p, "v1"))
	return u, p, addr
}

// On one connection, requests are answered in the order sent, held or
// not: pipelined ones (net/http reads the next only after answering the
// previous, so one is held) and keep-alive ones sent one after another.
func TestHeldRequestsKeepTheirOrderOnAConnection(t *testing.T) {
	u, p, addr := echoProxy(t)

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
	u, p, addr := echoProxy(t)
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
			u, p, addr := echoProxy(t)
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

// setBounds lowers the hold's bounds for a test.
func setBounds(p *Proxy, requests int, bytes int64) {
	p.heldMu.Lock()
	p.maxHeld, p.maxHeldBytes = requests, bytes
	p.heldMu.Unlock()
}

// Beyond either bound a new request is answered 503 + Retry-After: 1 at
// once, never held; the requests already held are not disturbed.
func TestHoldBounds(t *testing.T) {
	u, p, addr := echoProxy(t)
	small := "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"
	setBounds(p, 2, 2048)
	p.Hold()
	_, br1 := dialHeld(t, addr, small)
	_, br2 := dialHeld(t, addr, small)
	waitUntil(t, func() bool { return heldCount(p) == 2 })

	refusedAtOnce := func(what, req string) {
		t.Helper()
		_, br := dialHeld(t, addr, req)
		resp, body := readAnswer(t, br, false)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || body != "Too many requests are waiting; try again shortly.\n" {
			t.Fatalf("%s: %d Retry-After %q %q", what, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	refusedAtOnce("count bound", small)
	setBounds(p, 100, 2048)
	_, br3 := dialHeld(t, addr, small)
	waitUntil(t, func() bool { return heldCount(p) == 3 })
	_, bytesHeld := p.Held()
	if bytesHeld <= 0 || bytesHeld > 300 {
		t.Fatalf("3 small requests count %d bytes", bytesHeld)
	}
	refusedAtOnce("bytes bound", "GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("p", 2048-int(bytesHeld))+"\r\n\r\n")
	if n, b := p.Held(); n != 3 || b != bytesHeld {
		t.Fatalf("held %d (%d bytes) after the refusals", n, b)
	}
	// An upgrade beyond the bound gets the raw 503 and is closed.
	setBounds(p, 3, 2048)
	if raw := rawRequest(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); raw != "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" {
		t.Fatalf("upgrade beyond the bound: %q", raw)
	}
	if c := p.Counters(); c.Refused["limit"] != 3 || c.Held != 3 {
		t.Fatalf("counters %+v", c)
	}
	p.Release()
	for _, br := range []*bufio.Reader{br1, br2, br3} {
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 200 || body != "/small" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if hits := u.hits.Load(); hits != 3 {
		t.Fatalf("the app saw %d requests, want the 3 held", hits)
	}
}

// Refuse answers held requests and new ones 503 with Retry-After in whole
// seconds, rounded up; an upgrade gets a raw 503 and its connection
// closes. Nothing reaches the app.
func TestRefuseAnswersHeldAndNewRequests(t *testing.T) {
	u, p, addr := echoProxy(t)
	p.Hold()
	_, brGet := dialHeld(t, addr, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	_, brHead := dialHeld(t, addr, "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n")
	_, brPost := dialHeld(t, addr, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	cWS, brWS := dialHeld(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 4 })
	if n := p.Refuse(89500 * time.Millisecond); n != 4 {
		t.Fatalf("refused %d, want 4", n)
	}
	const body = "Traffic is paused; try again later.\n"
	check := func(what string, resp *http.Response, got, want string) {
		t.Helper()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "90" || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" || got != want {
			t.Fatalf("%s: %d %v %q", what, resp.StatusCode, resp.Header, got)
		}
	}
	resp, got := readAnswer(t, brGet, false)
	check("held GET", resp, got, body)
	resp, got = readAnswer(t, brHead, true)
	check("held HEAD", resp, got, "")
	if resp.ContentLength != int64(len(body)) {
		t.Fatalf("HEAD Content-Length %d", resp.ContentLength)
	}
	resp, got = readAnswer(t, brPost, false)
	check("held POST", resp, got, body)
	cWS.SetReadDeadline(time.Now().Add(10 * time.Second))
	if raw, err := io.ReadAll(brWS); err != nil || string(raw) != "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 90\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" {
		t.Fatalf("held upgrade: %q %v", raw, err)
	}
	code, got := send(t, addr, "GET /new HTTP/1.1\r\nHost: x\r\n\r\n")
	if code != 503 || got != body {
		t.Fatalf("new request: %d %q", code, got)
	}
	if raw := rawRequest(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); raw != "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 90\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" {
		t.Fatalf("new upgrade: %q", raw)
	}
	if c := p.Counters(); c.Refused["expired"] != 6 || c.Released != 0 {
		t.Fatalf("counters %+v", c)
	}
	if u.hits.Load() != 0 {
		t.Fatal("refused requests reached the app")
	}
	if n, b := p.Held(); n != 0 || b != 0 {
		t.Fatalf("held %d, %d bytes", n, b)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", 60 * time.Second: "60", 86400 * time.Second: "86400"} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%v) = %s, want %s", d, got, want)
		}
	}
}

// The maintenance response picks its format by Accept, honouring q and
// the most specific range, and escapes the message for the format.
func TestMaintenanceAnswers(t *testing.T) {
	u, p, addr := echoProxy(t)
	msg := `Back at 10:00 <script>alert("x")</script> & co`
	p.SetMaintenance(&Maintenance{Message: msg, RetryAfter: 2 * time.Minute})

	html := "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Down for maintenance</title></head>\n<body><h1>Down for maintenance</h1>\n" +
		"<p>Back at 10:00 &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co</p></body></html>\n"
	jsonBody := `{"error":"maintenance","message":"Back at 10:00 \u003cscript\u003ealert(\"x\")\u003c/script\u003e \u0026 co"}` + "\n"
	plain := msg + "\n"
	for _, c := range []struct{ accept, ctype, body string }{
		{"", "text/plain", plain},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", "text/html", html}, // a browser
		{"application/json", "application/json", jsonBody},
		{"application/json, text/plain, */*", "application/json", jsonBody}, // axios
		{"*/*", "text/plain", plain}, // curl
		{"text/*", "text/plain", plain},
		{"text/*;q=0.5, text/html", "text/html", html},
		{"text/html;q=0, */*", "text/plain", plain},
		{"text/plain;q=0, application/json;q=0, */*", "text/html", html},
		{"*/*;q=0", "text/plain", plain},
		{"text/*;q=0, application/json;q=0.1", "application/json", jsonBody},
		{"TEXT/HTML;Q=1", "text/html", html},
		{"text/html;level=1;q=0.9, application/json;q=0.8", "text/html", html},
		{"text/html;q=2, application/json", "application/json", jsonBody}, // q out of range: not acceptable
		{"text/html;q=NaN", "text/plain", plain},
		{"text/html;q=0.0001, application/json;q=0.5", "application/json", jsonBody},
		{"text/html;q=1.0, application/json;q=1.01", "text/html", html},
		{"image/png", "text/plain", plain},
		{";;;,,,==, q=1;q", "text/plain", plain},
		{"}{ garbage/// q=x", "text/plain", plain},
		{"\xff\xfe/\xfd;q=\xff, text/\xff", "text/plain", plain},
		{"text/plain;q=0.5, application/json;q=0.5, text/html;q=0.5", "text/plain", plain}, // a tie: the client's first
		{"text/html;q=0.5, application/json;q=0.5, text/plain;q=0.5", "text/html", html},
		{strings.Repeat("application/xml;q=0.1;a=b, ", 20000) + "text/html", "text/html", html},
	} {
		req := "GET / HTTP/1.1\r\nHost: x\r\n"
		if c.accept != "" {
			req += "Accept: " + c.accept + "\r\n"
		}
		_, br := dialHeld(t, addr, req+"\r\n")
		resp, body := readAnswer(t, br, false)
		h := resp.Header
		if resp.StatusCode != 503 || h.Get("Retry-After") != "120" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Vary") != "Accept" ||
			h.Get("Content-Type") != c.ctype+"; charset=utf-8" || body != c.body {
			t.Errorf("Accept %.60q: %d %v\n%q\nwant %s %q", c.accept, resp.StatusCode, h, body, c.ctype, c.body)
		}
	}

	// HEAD: the headers of the GET answer, no body.
	_, br := dialHeld(t, addr, "HEAD / HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n")
	resp, body := readAnswer(t, br, true)
	if resp.StatusCode != 503 || body != "" || resp.ContentLength != int64(len(html)) || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("HEAD: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if resp, body := readAnswer(t, br, false); resp.StatusCode != 503 || body != jsonBody {
		t.Fatalf("the request after the HEAD: %d %q", resp.StatusCode, body)
	}

	// The default message when none was given.
	p.SetMaintenance(&Maintenance{RetryAfter: time.Second})
	if code, body := send(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); code != 503 || body != DefaultMaintenanceMessage+"\n" {
		t.Fatalf("default message: %d %q", code, body)
	}
	// WebSocket upgrades: a raw 503, then the connection closes.
	if raw := rawRequest(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"); raw != "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" {
		t.Fatalf("upgrade in maintenance: %q", raw)
	}
	if u.hits.Load() != 0 {
		t.Fatal("requests reached the app in maintenance")
	}
	p.SetMaintenance(nil)
	if code, body := send(t, addr, "GET /open HTTP/1.1\r\nHost: x\r\n\r\n"); code != 200 || body != "/open" {
		t.Fatalf("after maintenance: %d %q", code, body)
	}
}

// Maintenance wins over a hold: held requests and upgrades get the
// maintenance answer, and none reaches the app.
func TestMaintenanceAnswersHeldRequests(t *testing.T) {
	u, p, addr := echoProxy(t)
	p.Hold()
	_, brJSON := dialHeld(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n")
	_, brPost := dialHeld(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	_, brWS := dialHeld(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 3 })
	p.SetMaintenance(&Maintenance{Message: "m", RetryAfter: 30 * time.Second})
	if resp, body := readAnswer(t, brJSON, false); resp.StatusCode != 503 || body != `{"error":"maintenance","message":"m"}`+"\n" || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("held GET: %d %q", resp.StatusCode, body)
	}
	if resp, body := readAnswer(t, brPost, false); resp.StatusCode != 503 || body != "m\n" {
		t.Fatalf("held POST: %d %q", resp.StatusCode, body)
	}
	if raw, _ := io.ReadAll(brWS); string(raw) != "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" {
		t.Fatalf("held upgrade: %q", raw)
	}
	if c := p.Counters(); c.Refused["maintenance"] != 3 || c.Released != 0 {
		t.Fatalf("counters %+v", c)
	}
	// Hold under maintenance: maintenance still answers.
	if code, _ := send(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); code != 503 || u.hits.Load() != 0 {
		t.Fatalf("%d, app hits %d", code, u.hits.Load())
	}
}

// Parsing a hostile Accept costs one pass and no allocation, however
// many ranges and parameters it has.
func TestAcceptParsingAllocatesNothing(t *testing.T) {
	accept := []string{strings.Repeat("a/b;q=0.5;x=y;z, ", 10000) + "application/json"}
	if allocs := testing.AllocsPerRun(10, func() {
		if f := preferredFormat(accept); f != "application/json" {
			t.Fatal(f)
		}
	}); allocs != 0 {
		t.Fatalf("%v allocations per Accept", allocs)
	}
}

// A WebSocket handshake that arrives during a hold is held, then
// tunnelled after the release, bytes flowing both ways.
func TestHeldWebSocketIsTunnelledAfterRelease(t *testing.T) {
	closeUpstream := make(chan struct{})
	defer close(closeUpstream)
	u := wsUpstream(t, closeUpstream)
	p, addr, _ := startProxy(t)
	target := u.target(p, "v1")
	p.SetActive(target)
	p.Hold()
	c, br := dialHeld(t, addr, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 1 })
	if u.hits.Load() != 0 || p.InFlight() != 0 {
		t.Fatalf("held handshake: app hits %d, in flight %d", u.hits.Load(), p.InFlight())
	}
	if n := p.Release(); n != 1 {
		t.Fatalf("released %d", n)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake after the release: %v %v", resp, err)
	}
	for _, msg := range []string{"ping\n", strings.Repeat("x", 100000) + "\n"} {
		io.WriteString(c, msg)
		if line, err := br.ReadString('\n'); line != msg {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), len(line), err)
		}
	}
	if _, ws := target.Connections(); ws != 1 || p.InFlight() != 0 {
		t.Fatalf("websocket count %d, in flight %d", ws, p.InFlight())
	}
	c.Close()
	waitUntil(t, func() bool { _, ws := target.Connections(); return ws == 0 })
}

// The race rule: the request path counts a request in flight before it
// reads the gate, so once Hold has returned and WaitInFlight has seen 0,
// no request reaches the application until the release, however many
// arrive at that moment.
func TestNothingIsForwardedAfterHoldAndWaitInFlight(t *testing.T) {
	const clients, rounds = 16, 25
	var closed atomic.Bool
	var violations, served atomic.Int64
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if closed.Load() {
			violations.Add(1)
		}
		served.Add(1)
		io.WriteString(w, "ok")
	})
	p, addr, _ := startProxy(t)
	p.SetActive(u.target(p, "v1"))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 20 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	failures := make(chan string, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + addr + "/")
				if err != nil {
					failures <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures <- resp.Status
					return
				}
			}
		}()
	}
	defer func() { close(stop); p.Release(); wg.Wait() }()
	for round := range rounds {
		before := served.Load()
		waitUntil(t, func() bool { return served.Load() > before+clients }) // traffic flows
		p.Hold()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		open, err := p.WaitInFlight(ctx)
		cancel()
		if open != 0 || err != nil {
			t.Fatalf("round %d: WaitInFlight = %d, %v", round, open, err)
		}
		closed.Store(true)
		waitUntil(t, func() bool { return heldCount(p) == clients }) // every client waits
		closed.Store(false)
		if n := violations.Load(); n != 0 {
			t.Fatalf("round %d: %d requests reached the app after Hold and WaitInFlight returned 0", round, n)
		}
		p.Release()
		select {
		case f := <-failures:
			t.Fatalf("a client failed: %s", f)
		default:
		}
	}
}

// Shutdown answers held requests 503 + Retry-After instead of cutting
// them, even with no grace at all.
func TestShutdownAnswersHeldRequests(t *testing.T) {
	u := echoPath(t)
	p, ln := servingProxy(t, u)
	p.Hold()
	const n = 20
	readers := make([]*bufio.Reader, n)
	for i := range n {
		req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
		if i%2 == 1 {
			req = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
		}
		_, readers[i] = dialHeld(t, ln.Addr().String(), req)
	}
	cWS, brWS := dialHeld(t, ln.Addr().String(), "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == n+1 })
	if err := p.Shutdown(0); err != nil {
		t.Fatal(err)
	}
	for i, br := range readers {
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || body != "Traffic is paused; try again later.\n" {
			t.Fatalf("held request %d at shutdown: %d %q", i, resp.StatusCode, body)
		}
	}
	cWS.SetReadDeadline(time.Now().Add(10 * time.Second))
	if raw, _ := io.ReadAll(brWS); string(raw) != "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" {
		t.Fatalf("held upgrade at shutdown: %q", raw)
	}
	if u.hits.Load() != 0 {
		t.Fatal("held requests reached the app at shutdown")
	}
}

// A held request counts about what its parsed header holds in memory,
// also when that header is thousands of tiny fields.
func TestHeldBytesFollowMemory(t *testing.T) {
	var raw strings.Builder
	raw.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
	const fields = 20000
	for i := range fields {
		fmt.Fprintf(&raw, "a%d: b\r\n", i)
	}
	raw.WriteString("\r\n")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw.String())))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	counted := headerBytes(req)
	runtime.KeepAlive(req)
	if counted < heap/2 || counted < int64(raw.Len()) {
		t.Fatalf("%d fields of %d bytes hold %d bytes of heap; counted %d", fields, raw.Len(), heap, counted)
	}
}

// observations records what a metrics observer was told.
type observations struct {
	mu   sync.Mutex
	seen []observation
}

type observation struct {
	status  int
	elapsed time.Duration
}

func (o *observations) ObserveRequest(status int, elapsed time.Duration) {
	o.mu.Lock()
	o.seen = append(o.seen, observation{status, elapsed})
	o.mu.Unlock()
}

func (o *observations) all() []observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]observation(nil), o.seen...)
}

// The time a request spent held counts in the duration the metrics see,
// whether it was then forwarded or answered 503 by the gate, and every
// 503 the gate answers is observed, those of a full hold too.
func TestHeldTimeCountsInObservedDuration(t *testing.T) {
	const held = 100 * time.Millisecond
	idle, app := &observations{}, &observations{}
	u := echoPath(t)
	p, addr := startProxyWith(t, Options{Idle: idle})
	target := u.target(p, "v1")
	target.SetObserver(app)
	p.SetActive(target)

	holdFor := func(release func()) *bufio.Reader {
		p.Hold()
		_, br := dialHeld(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		waitUntil(t, func() bool { return heldCount(p) == 1 })
		since := time.Now()
		waitUntil(t, func() bool { return time.Since(since) >= held }) // time held, to be measured
		release()
		return br
	}
	readAnswer(t, holdFor(func() { p.Release() }), false)
	readAnswer(t, holdFor(func() { p.Refuse(time.Second) }), false)
	readAnswer(t, holdFor(func() { p.SetMaintenance(&Maintenance{}) }), false)
	p.Hold()
	setBounds(p, 0, MaxHeldBytes)
	if code, _ := send(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); code != 503 {
		t.Fatalf("beyond the bound: %d", code)
	}

	if seen := app.all(); len(seen) != 1 || seen[0].status != 200 || seen[0].elapsed < held {
		t.Fatalf("released request observed as %+v, want 200 after at least %v", seen, held)
	}
	seen := idle.all()
	if len(seen) != 3 {
		t.Fatalf("the gate's 503s observed as %+v, want 3", seen)
	}
	for _, o := range seen[:2] {
		if o.status != 503 || o.elapsed < held {
			t.Fatalf("held then refused: observed %+v, want 503 after at least %v", seen, held)
		}
	}
	if seen[2].status != 503 {
		t.Fatalf("refused beyond the bound: observed %+v", seen[2])
	}
}

// Held requests go to the target active when they are released, not the
// one active when they arrived; with none active they get the usual 503.
func TestReleaseGoesToTheTargetActiveThen(t *testing.T) {
	old := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "old") })
	next := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "new") })
	p, addr, _ := startProxy(t)
	p.SetActive(old.target(p, "v1"))
	p.Hold()
	_, br := dialHeld(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 1 })
	p.SetActive(next.target(p, "v2"))
	p.Release()
	if resp, body := readAnswer(t, br, false); resp.StatusCode != 200 || body != "new" {
		t.Fatalf("%d %q, want the new release's answer", resp.StatusCode, body)
	}

	p.Hold()
	_, br = dialHeld(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 1 })
	p.SetActive(nil)
	p.Release()
	if resp, body := readAnswer(t, br, false); resp.StatusCode != 503 || body != "No active release\n" {
		t.Fatalf("%d %q, want 503 No active release", resp.StatusCode, body)
	}
	if old.hits.Load() != 0 || next.hits.Load() != 1 {
		t.Fatalf("hits old %d new %d", old.hits.Load(), next.hits.Load())
	}
	if p.InFlight() != 0 {
		t.Fatalf("in flight %d", p.InFlight())
	}
}

// A held request whose client left just before the release is not sent
// to the application: neither an upload, whose body waits complete in
// the socket and whose periodic check has not seen the close yet, nor a
// GET, whose close net/http may not have noticed yet.
func TestReleasedRequestOfAClientThatLeftIsNotForwarded(t *testing.T) {
	u := bodyApp(t)
	p, addr, _ := startProxy(t)
	p.SetActive(u.target(p, "v1"))
	for i := range 10 {
		req := "POST /gone HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
		if i%2 == 1 {
			req = "GET /gone HTTP/1.1\r\nHost: x\r\n\r\n"
		}
		p.Hold()
		c, _ := dialHeld(t, addr, req)
		waitUntil(t, func() bool { return heldCount(p) == 1 })
		c.Close()
		p.Release()
		waitUntil(t, func() bool { return p.InFlight() == 0 && p.clientConns() == 0 })
		if hits := u.hits.Load(); hits != 0 {
			t.Fatalf("round %d: the app got %d requests of clients that left", i, hits)
		}
	}
}
