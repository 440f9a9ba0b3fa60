package proxy

import (
	"bufio"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
	d.seen = append(d.seen, path+"@"+itoa(int(n)))
	d.mu.Unlock()
}

func (d *dropper) log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.seen...)
}

// A request that fails on a reused pooled connection before any byte of
// an answer arrived is sent once more, on a fresh connection, when it is
// replayable (Go's Transport rule): GET, HEAD, OPTIONS, TRACE, or an
// Idempotency-Key. Every other request that was written is never sent
// twice, and a failure on the fresh connection is not retried again.
func TestRetryOnlyReplayableRequestsOnReusedConnections(t *testing.T) {
	cases := []struct {
		name      string
		req       string
		dropFresh bool // the fresh connection fails too
		want      int
		seen      []string
	}{
		{"GET", "GET /t HTTP/1.1\r\nHost: app\r\n\r\n", false, 200, []string{"/t@1", "/t@2"}},
		{"HEAD", "HEAD /t HTTP/1.1\r\nHost: app\r\n\r\n", false, 200, []string{"/t@1", "/t@2"}},
		{"OPTIONS", "OPTIONS /t HTTP/1.1\r\nHost: app\r\n\r\n", false, 200, []string{"/t@1", "/t@2"}},
		{"POST with Idempotency-Key", "POST /t HTTP/1.1\r\nHost: app\r\nIdempotency-Key: k1\r\nContent-Length: 0\r\n\r\n", false, 200, []string{"/t@1", "/t@2"}},
		{"DELETE with X-Idempotency-Key", "DELETE /t HTTP/1.1\r\nHost: app\r\nX-Idempotency-Key: k1\r\n\r\n", false, 200, []string{"/t@1", "/t@2"}},
		{"POST without body", "POST /t HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\n\r\n", false, 502, []string{"/t@1"}},
		{"DELETE", "DELETE /t HTTP/1.1\r\nHost: app\r\n\r\n", false, 502, []string{"/t@1"}},
		{"POST with body", "POST /t HTTP/1.1\r\nHost: app\r\nContent-Length: 4\r\n\r\nbody", false, 502, []string{"/t@1"}},
		{"PUT with body and Idempotency-Key", "PUT /t HTTP/1.1\r\nHost: app\r\nIdempotency-Key: k1\r\nContent-Length: 4\r\n\r\nbody", false, 502, []string{"/t@1"}},
		{"GET failing twice", "GET /t HTTP/1.1\r\nHost: app\r\n\r\n", true, 502, []string{"/t@1", "/t@2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &dropper{}
			b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
				for k := 1; ; k++ {
					req := b.readRequest(c, br)
					if req == nil {
						return
					}
					if req.URL.Path == "/warm" {
						answer(c, "warm")
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
		host, port, _ := net.SplitHostPort(strings.TrimPrefix(u.URL, "http://"))
		p.SetActive(NewTarget("v1", host, atoiPort(port), p))
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

func atoiPort(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
