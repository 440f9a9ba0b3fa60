package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dropper answers the first request on connection 1 with keep-alive,
// then drops every request it reads afterwards (up to dropFresh of them
// on later connections) by closing without an answer; everything else is
// answered. It records each request's path and connection.
type dropper struct {
	mu   sync.Mutex
	seen []string // "path@connection"
}

func (d *dropper) record(path string, n int64) {
	d.mu.Lock()
	d.seen = append(d.seen, path+"@"+strconv.FormatInt(n, 10))
	d.mu.Unlock()
}

func (d *dropper) log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.seen...)
}

// A request that fails on a reused pooled connection before any byte of
// an answer arrived is sent once more, on a fresh connection, when it is
// replayable (GET, HEAD, OPTIONS, TRACE, or an Idempotency-Key: Go's
// Transport rule) and never reached the application: the application
// closed the connection with the request unread (a reset). A request the
// application read and then dropped is never sent twice, whatever its
// method; neither is a request that is not replayable; and a failure on
// the fresh connection is not retried again.
func TestRetryOnlyReplayableRequestsOnReusedConnections(t *testing.T) {
	const (
		get     = "GET /t HTTP/1.1\r\nHost: app\r\n\r\n"
		head    = "HEAD /t HTTP/1.1\r\nHost: app\r\n\r\n"
		options = "OPTIONS /t HTTP/1.1\r\nHost: app\r\n\r\n"
		keyed   = "POST /t HTTP/1.1\r\nHost: app\r\nIdempotency-Key: k1\r\nContent-Length: 0\r\n\r\n"
		xkeyed  = "DELETE /t HTTP/1.1\r\nHost: app\r\nX-Idempotency-Key: k1\r\n\r\n"
		post    = "POST /t HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\n\r\n"
		del     = "DELETE /t HTTP/1.1\r\nHost: app\r\n\r\n"
		body    = "POST /t HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\n\r\nbody"
		keyBody = "PUT /t HTTP/1.1\r\nHost: app\r\nIdempotency-Key: k1\r\nContent-Length: 4\r\n\r\nbody"
	)
	cases := []struct {
		name      string
		req       string
		unread    bool // connection 1 closes with the request unread; else it reads it first
		dropFresh bool // the fresh connection fails the same way
		want      int
		seen      []string
	}{
		{"GET unread", get, true, false, 200, []string{"/t@2"}},
		{"HEAD unread", head, true, false, 200, []string{"/t@2"}},
		{"OPTIONS unread", options, true, false, 200, []string{"/t@2"}},
		{"POST with Idempotency-Key unread", keyed, true, false, 200, []string{"/t@2"}},
		{"DELETE with X-Idempotency-Key unread", xkeyed, true, false, 200, []string{"/t@2"}},
		{"POST without body unread", post, true, false, 502, nil},
		{"DELETE unread", del, true, false, 502, nil},
		{"POST with body unread", body, true, false, 502, nil},
		{"PUT with body and Idempotency-Key unread", keyBody, true, false, 502, nil},
		{"GET unread failing twice", get, true, true, 502, nil},
		{"GET read", get, false, false, 502, []string{"/t@1"}},
		{"HEAD read", head, false, false, 502, []string{"/t@1"}},
		{"POST with Idempotency-Key read", keyed, false, false, 502, []string{"/t@1"}},
		{"POST without body read", post, false, false, 502, []string{"/t@1"}},
		{"POST with body read", body, false, false, 502, []string{"/t@1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &dropper{}
			b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
				if n > 1 && tc.unread && tc.dropFresh {
					closeUnread(c)
					return
				}
				for {
					req := b.readRequest(c, br)
					if req == nil {
						return
					}
					if req.URL.Path == "/warm" {
						answer(c, "warm")
						if n == 1 && tc.unread {
							closeUnread(c) // the next request arrives, unread
							return
						}
						continue
					}
					d.record(req.URL.Path, n)
					if n == 1 || tc.dropFresh {
						return // read it, then vanish without an answer
					}
					if req.Method == http.MethodHead {
						c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
					} else {
						answer(c, "fresh")
					}
				}
			})
			_, addr, errs := proxyTo(t, b)
			// Warm-up: connection 1 is pooled by whichever path the
			// request under test takes.
			warm := "GET /warm HTTP/1.1\r\nHost: app\r\n\r\n"
			if strings.Contains(tc.req, "body") {
				warm = "POST /warm HTTP/1.1\r\nHost: app\r\nContent-Length: 1\r\n\r\nw"
			}
			if code, body := send(t, addr, warm); code != 200 || body != "warm" {
				t.Fatalf("warm-up: %d %q", code, body)
			}
			code, _ := send(t, addr, tc.req)
			if code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
			if got := d.log(); strings.Join(got, " ") != strings.Join(tc.seen, " ") {
				t.Fatalf("the application saw %q, want %q", got, tc.seen)
			}
			if n := len(errs.all()); (tc.want == 502) != (n == 1) || n > 1 {
				t.Fatalf("proxy errors %q", errs.all())
			}
		})
	}
}

// closeUnread waits until the proxy has sent something on c, then closes
// it without reading: the kernel answers the unread data with a reset,
// as when an application closes an idle connection just as a request
// arrives.
func closeUnread(c net.Conn) {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err == nil {
		raw.Read(func(fd uintptr) bool {
			var b [1]byte
			_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return err != unix.EAGAIN // wait while nothing is there
		})
	}
	c.Close()
}

// An application that closes idle keep-alive connections after one second
// (gunicorn's default is two), and clients whose requests come about one
// second apart, so requests meet connections the application is closing
// at that very moment: no request fails.
func TestAppClosingIdleConnectionsAfterOneSecond(t *testing.T) {
	const lanes, perLane = 16, 12
	var failed, total, upstreamConns atomic.Int64
	var wg sync.WaitGroup
	for range lanes {
		u := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
		u.Config.IdleTimeout = time.Second
		u.Config.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				upstreamConns.Add(1)
			}
		}
		u.Start()
		t.Cleanup(u.Close)
		p, addr, _ := startProxy(t)
		a := u.Listener.Addr().(*net.TCPAddr)
		p.SetActive(NewTarget("v1", a.IP.String(), a.Port, p))
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		t.Cleanup(client.CloseIdleConnections)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perLane {
				resp, err := client.Get("http://" + addr + "/")
				total.Add(1)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
				// The pacing of the scenario (not a synchronisation): the
				// pooled connection is about as old as the app's limit.
				time.Sleep(time.Second - 20*time.Millisecond + rand.N(40*time.Millisecond))
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests, %d failed, %d upstream connections", total.Load(), failed.Load(), upstreamConns.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), total.Load())
	}
}

// delivered tells a request the application's TCP stack accepted from
// one that met a connection the application had already closed (which
// the retry rule may send again).
func TestDeliveredTellsAcceptedFromRefusedBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pool := newConnPool(ln.Addr().String(), (&net.Dialer{}).DialContext)
	pair := func() (*upConn, net.Conn) {
		c, err := pool.dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}

	// Read by the application: acknowledged.
	c, s := pair()
	defer c.c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	io.ReadFull(s, make([]byte, 18))
	deadline := time.Now().Add(5 * time.Second)
	for !c.delivered() {
		if time.Now().After(deadline) {
			t.Fatal("bytes the application read count as not delivered")
		}
		time.Sleep(time.Millisecond)
	}
	s.Close()

	// Sent after the application closed the connection: refused with a
	// reset, never acknowledged.
	c2, s2 := pair()
	defer c2.c.Close()
	s2.Close()
	c2.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c2.c)
	if _, err := br.Peek(1); err != io.EOF {
		t.Fatalf("waiting for the close: %v", err)
	}
	c2.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	for {
		if _, err := c2.c.Write([]byte("x")); err != nil {
			break // the reset has arrived
		}
		if time.Now().After(deadline) {
			t.Fatal("no reset")
		}
		time.Sleep(time.Millisecond)
	}
	if c2.delivered() {
		t.Fatal("bytes sent to a closed connection count as delivered")
	}
}

// replayingTransport stands for Go's Transport sending a request again:
// it writes it on one connection, which fails, then takes another.
type replayingTransport struct{ attempts int }

func (rt *replayingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	trace := httptrace.ContextClientTrace(req.Context())
	for {
		rt.attempts++
		if err := req.Context().Err(); err != nil {
			return nil, err
		}
		trace.GotConn(httptrace.GotConnInfo{Reused: rt.attempts == 1})
		if err := req.Context().Err(); err != nil {
			return nil, err // refused before a second write
		}
		trace.WroteRequest(httptrace.WroteRequestInfo{})
		if rt.attempts > 1 {
			return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req}, nil
		}
	}
}

// The path through Go's Transport (requests with a body, WebSocket
// handshakes) never lets it send a written request a second time: it
// cannot tell whether the application read it.
func TestStandardPathRefusesReplays(t *testing.T) {
	rt := &replayingTransport{}
	ut := &upstreamTransport{fallback: rt}
	req := httptest.NewRequest("GET", "http://app/ws", nil)
	req.Header.Set("Upgrade", "websocket")
	_, err := ut.roundTripStandard(req)
	if !errors.Is(err, errReplayRefused) || rt.attempts != 2 {
		t.Fatalf("a replay: %v after %d attempts", err, rt.attempts)
	}
}
