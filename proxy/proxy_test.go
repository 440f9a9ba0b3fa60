package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startProxy serves a proxy on a loopback port and stops it at the end.
func startProxy(t *testing.T) (*Proxy, string, *errorLog) {
	t.Helper()
	errs := &errorLog{}
	p, addr := startProxyWith(t, Options{OnError: errs.add})
	return p, addr, errs
}

type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (e *errorLog) add(m string) { e.mu.Lock(); e.msgs = append(e.msgs, m); e.mu.Unlock() }
func (e *errorLog) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.msgs...)
}

// upstream is a test app: it reports what it received and counts the TCP
// connections it accepted.
type upstream struct {
	*httptest.Server
	conns  atomic.Int64
	closed atomic.Int64
	hits   atomic.Int64
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h(w, r)
	}))
	u.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.conns.Add(1)
		case http.StateClosed:
			u.closed.Add(1)
		}
	}
	u.Start()
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) target(p *Proxy, id string) *Target {
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(u.URL, "http://"))
	n, _ := strconv.Atoi(port)
	return NewTarget(id, host, n, p)
}

func get(t *testing.T, client *http.Client, url string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func TestNoActiveRelease(t *testing.T) {
	_, addr, _ := startProxy(t)
	code, body, h := get(t, http.DefaultClient, "http://"+addr+"/x", nil)
	if code != 503 || body != "No active release\n" || h.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("%d %q %v", code, body, h)
	}
	raw := rawRequest(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if raw != "HTTP/1.1 503 Service Unavailable\r\n\r\n" {
		t.Fatalf("upgrade without a release got %q", raw)
	}
}

// rawRequest writes a request and returns everything until the proxy
// closes the connection.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, req)
	out, _ := io.ReadAll(c)
	return string(out)
}

func TestForwardedHeadersAndVerbatimTarget(t *testing.T) {
	var seen *http.Request
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		seen = r
		w.Header().Set("X-App", "1")
		w.WriteHeader(201)
		io.WriteString(w, "created")
	})
	p, addr, _ := startProxy(t)
	p.SetActive(u.target(p, "v1"))

	code, body, h := get(t, http.DefaultClient, "http://"+addr+"/headers?a=1;b=2&c", map[string]string{
		"Host": "shop.example.com", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
	})
	if code != 201 || body != "created" || h.Get("X-App") != "1" {
		t.Fatalf("%d %q", code, body)
	}
	want := map[string]string{
		"X-Forwarded-Host": "shop.example.com", "X-Forwarded-Port": "80", "X-Forwarded-Proto": "https,http",
		"X-Forwarded-For": "203.0.113.9,127.0.0.1",
	}
	for k, v := range want {
		if got := seen.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if seen.Host != "shop.example.com" || seen.URL.RawQuery != "a=1;b=2&c" || seen.URL.Path != "/headers" {
		t.Errorf("host %q target %q", seen.Host, seen.URL.String())
	}

	get(t, http.DefaultClient, "http://"+addr+"/fwd", map[string]string{"Forwarded": "for=192.0.2.60;proto=https", "X-Forwarded-Host": "edge.example"})
	if _, ok := seen.Header["Forwarded"]; ok || seen.Header.Get("X-Forwarded-Host") != "edge.example" {
		t.Errorf("X-Forwarded-Host is kept, Forwarded is not passed on: %v", seen.Header)
	}
	get(t, http.DefaultClient, "http://"+addr+"/plain", nil)
	want = map[string]string{"X-Forwarded-Host": addr, "X-Forwarded-Proto": "http", "X-Forwarded-Port": addr[strings.LastIndex(addr, ":")+1:], "X-Forwarded-For": "127.0.0.1"}
	for k, v := range want {
		if got := seen.Header.Get(k); got != v {
			t.Errorf("without client headers: %s = %q, want %q", k, got, v)
		}
	}
}

func TestBadGateway(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p, addr, errs := startProxy(t)
	p.SetActive(NewTarget("v1", "127.0.0.1", port, p))
	code, body, h := get(t, http.DefaultClient, "http://"+addr+"/", nil)
	if code != 502 || body != "Bad gateway\n" || h.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("%d %q", code, body)
	}
	if got := errs.all(); len(got) != 1 || got[0] != "connect ECONNREFUSED 127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("proxy errors %q", got)
	}
	if h, w := p.Active().Connections(); h != 0 || w != 0 {
		t.Fatalf("counts %d %d", h, w)
	}
}

// Upstream connections are pooled per target, and the pool of a target
// that loses the traffic is closed at the switch.
func TestUpstreamKeepAliveAndSwitch(t *testing.T) {
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") })
	b := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	p, addr, _ := startProxy(t)
	ta := a.target(p, "a")
	p.SetActive(ta)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 10}}
	for range 50 {
		if _, body, _ := get(t, client, "http://"+addr+"/", nil); body != "a" {
			t.Fatalf("body %q", body)
		}
	}
	if n := a.conns.Load(); n != 1 {
		t.Fatalf("50 sequential requests used %d upstream connections", n)
	}
	if prev := p.SetActive(b.target(p, "b")); prev != ta {
		t.Fatal("SetActive returns the previous target")
	}
	if _, body, _ := get(t, client, "http://"+addr+"/", nil); body != "b" {
		t.Fatalf("after the switch: %q", body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the retired target's idle upstream connection was not closed at the switch")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A request in flight finishes on the target it started on; it is counted
// there until it finishes.
func TestInFlightRequestFinishesOnItsTarget(t *testing.T) {
	release := make(chan struct{})
	a := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "a")
	})
	b := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	p, addr, _ := startProxy(t)
	ta := a.target(p, "a")
	p.SetActive(ta)
	got := make(chan string)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(body)
	}()
	waitUntil(t, func() bool { h, _ := ta.Connections(); return h == 1 })
	p.SetActive(b.target(p, "b"))
	if _, body, _ := get(t, http.DefaultClient, "http://"+addr+"/", nil); body != "b" {
		t.Fatalf("new request went to %q", body)
	}
	idle := make(chan bool)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		idle <- ta.WaitIdle(ctx)
	}()
	close(release)
	if body := <-got; body != "a" {
		t.Fatalf("in-flight request answered %q", body)
	}
	if !<-idle {
		t.Fatal("WaitIdle did not see the target go idle")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A request the application read on a pooled connection, then dropped
// without an answer, is not sent again, even a GET: the application may
// already have acted on it.
func TestNoReplayOfWrittenRequests(t *testing.T) {
	var n atomic.Int64
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close() // read the request, then vanish without answering
			return
		}
		io.WriteString(w, "ok")
	})
	p, addr, errs := startProxy(t)
	p.SetActive(u.target(p, "v1"))
	if code, _, _ := get(t, http.DefaultClient, "http://"+addr+"/1", nil); code != 200 {
		t.Fatal(code)
	}
	if code, body, _ := get(t, http.DefaultClient, "http://"+addr+"/2", nil); code != 502 || body != "Bad gateway\n" {
		t.Fatalf("%d %q", code, body)
	}
	if got := u.hits.Load(); got != 2 {
		t.Fatalf("the upstream saw %d requests; the failed GET was replayed", got)
	}
	if len(errs.all()) != 1 {
		t.Fatalf("proxy errors %q", errs.all())
	}
}

// wsUpstream accepts a WebSocket handshake and then echoes raw bytes; it
// closes its side only when told to, not when the client's side ends.
func wsUpstream(t *testing.T, closeUpstream <-chan struct{}) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Forwarded-Proto-Seen: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(h[:]), r.Header.Get("X-Forwarded-Proto"))
		brw.Flush()
		go io.Copy(conn, brw)
		<-closeUpstream
	})
}

func dialWebSocket(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("handshake: %v (%q)", err, head.String())
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	return c, br, head.String()
}

// A tunnel ends as soon as either side closes, and is counted until then.
func TestWebSocketTunnel(t *testing.T) {
	for _, side := range []string{"client", "upstream"} {
		t.Run(side+" closes", func(t *testing.T) {
			closeUpstream := make(chan struct{})
			u := wsUpstream(t, closeUpstream)
			defer func() {
				select {
				case <-closeUpstream:
				default:
					close(closeUpstream)
				}
			}()
			p, addr, _ := startProxy(t)
			target := u.target(p, "v1")
			p.SetActive(target)
			c, br, head := dialWebSocket(t, addr)
			defer c.Close()
			if !strings.HasPrefix(head, "HTTP/1.1 101 Switching Protocols\r\n") || !strings.Contains(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") ||
				!strings.Contains(strings.ToLower(head), "x-forwarded-proto-seen: ws") {
				t.Fatalf("handshake %q", head)
			}
			io.WriteString(c, "ping\n")
			if line, _ := br.ReadString('\n'); line != "ping\n" {
				t.Fatalf("echo %q", line)
			}
			if _, ws := target.Connections(); ws != 1 {
				t.Fatalf("websocket count %d", ws)
			}
			if side == "client" {
				c.(*net.TCPConn).CloseWrite() // a FIN, no close frame; the app keeps its side open
				if _, err := br.ReadString('\n'); err == nil {
					t.Fatal("the tunnel should end, closing the client's side too")
				}
			} else {
				close(closeUpstream)
				if _, err := br.ReadString('\n'); err == nil {
					t.Fatal("the client should see the tunnel end")
				}
			}
			waitUntil(t, func() bool { _, ws := target.Connections(); return ws == 0 })
		})
	}
}

func TestInvalidUpgradeIsDropped(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "no") })
	p, addr, _ := startProxy(t)
	target := u.target(p, "v1")
	p.SetActive(target)
	if got := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"); got != "" {
		t.Fatalf("non-WebSocket upgrade answered %q", got)
	}
	if got := rawRequest(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n"); got != "" {
		t.Fatalf("POST upgrade answered %q", got)
	}
	if u.hits.Load() != 0 {
		t.Fatal("invalid upgrades reached the upstream")
	}
	waitUntil(t, func() bool { _, ws := target.Connections(); return ws == 0 })
}

// Shutdown ends open tunnels after the grace period instead of waiting for
// clients forever.
func TestShutdownClosesLingeringTunnels(t *testing.T) {
	u := wsUpstream(t, make(chan struct{}))
	p := New(Options{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(ln)
	p.SetActive(u.target(p, "v1"))
	c, br, _ := dialWebSocket(t, ln.Addr().String())
	defer c.Close()
	if err := p.Shutdown(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the tunnel is still open after shutdown")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("the listener still accepts")
	}
}

// Pooled upstream connections: kept after complete answers (also HEAD and
// 204), dropped after Connection: close or an answer the client did not
// read to its end, and never reused once the application closed them.
func TestUpstreamConnectionReuse(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/big":
			w.Write(bytes.Repeat([]byte("x"), 4<<20))
		default:
			io.WriteString(w, "ok")
		}
	})
	p, addr, errs := startProxy(t)
	p.SetActive(u.target(p, "v1"))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 10}}
	for _, path := range []string{"/", "/empty", "/"} {
		get(t, client, "http://"+addr+path, nil)
	}
	req, _ := http.NewRequest("HEAD", "http://"+addr+"/", nil)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v", err)
	} else {
		resp.Body.Close()
	}
	get(t, client, "http://"+addr+"/", nil)
	if n := u.conns.Load(); n != 1 {
		t.Fatalf("GET, 204, GET, HEAD, GET used %d upstream connections", n)
	}
	// Connection: close is honoured.
	get(t, client, "http://"+addr+"/close", nil)
	get(t, client, "http://"+addr+"/", nil)
	if n := u.conns.Load(); n != 2 {
		t.Fatalf("after Connection: close: %d connections", n)
	}
	// A client that hangs up mid-answer: that connection is not pooled.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: app\r\n\r\n")
	buf := make([]byte, 1024)
	io.ReadFull(c, buf)
	c.Close()
	waitUntil(t, func() bool { return u.closed.Load() >= 2 })
	if code, body, _ := get(t, client, "http://"+addr+"/", nil); code != 200 || body != "ok" {
		t.Fatalf("after an abandoned answer: %d %q", code, body)
	}
	if e := errs.all(); len(e) != 0 {
		t.Fatalf("proxy errors %q", e)
	}
}

// An application that closes idle keep-alive connections sooner than the
// proxy's pool timeout never costs a request.
func TestUpstreamClosedIdleConnection(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p, addr, errs := startProxy(t)
	p.SetActive(u.target(p, "v1"))
	for i := 0; i < 5; i++ {
		get(t, http.DefaultClient, "http://"+addr+"/", nil)
		// The application ends every idle connection.
		u.CloseClientConnections()
		waitUntil(t, func() bool { return u.closed.Load() == int64(i+1) })
	}
	if code, body, _ := get(t, http.DefaultClient, "http://"+addr+"/", nil); code != 200 || body != "ok" {
		t.Fatalf("%d %q", code, body)
	}
	if e := errs.all(); len(e) != 0 {
		t.Fatalf("proxy errors %q", e)
	}
	if n := u.hits.Load(); n != 6 {
		t.Fatalf("the application saw %d requests", n)
	}
}
