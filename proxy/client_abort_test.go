package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// openFDs counts the descriptors of the test process (proxy, backend and
// clients all live in it).
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// 1,000 clients that go away in the middle of an exchange, at different
// moments, leave no upstream connection and no descriptor behind: an
// aborted exchange's connection is closed, never pooled.
func TestClientAbortsLeaveNothingOpen(t *testing.T) {
	var seen sync.Map // request id -> struct{}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
		for {
			req := b.readRequest(c, br)
			if req == nil {
				return
			}
			seen.Store(req.URL.Query().Get("id"), struct{}{})
			switch req.URL.Path {
			case "/slow": // no answer: the client leaves first
				untilClosed(c, br, 20*time.Second)
				return
			case "/body": // part of a 4 MiB body, then the rest as long as it is read
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n")
				c.SetWriteDeadline(time.Now().Add(20 * time.Second))
				for range 64 {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			default:
				answer(c, "ok")
			}
		}
	})
	p, addr, errs := proxyTo(t, b)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	t.Cleanup(client.CloseIdleConnections)
	warm := func() {
		t.Helper()
		if code, body, _ := get(t, client, "http://"+addr+"/", nil); code != 200 || body != "ok" {
			t.Fatalf("%d %q", code, body)
		}
	}
	warm()
	fdsBefore := openFDs(t)

	const aborts = 1000
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				id := strconv.Itoa(i)
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				switch i % 3 {
				case 0: // gone right after sending
					io.WriteString(c, "GET /slow?id="+id+" HTTP/1.1\r\nHost: app\r\n\r\n")
				case 1: // gone while the application works on it
					io.WriteString(c, "GET /slow?id="+id+" HTTP/1.1\r\nHost: app\r\n\r\n")
					for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
						if _, ok := seen.Load(id); ok {
							break
						}
						if time.Now().After(deadline) {
							t.Errorf("request %s did not reach the application", id)
							break
						}
					}
				case 2: // gone in the middle of the body
					io.WriteString(c, "GET /body?id="+id+" HTTP/1.1\r\nHost: app\r\n\r\n")
					br := bufio.NewReader(c)
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Errorf("request %s: %v", id, err)
					} else {
						io.CopyN(io.Discard, resp.Body, 100<<10)
					}
				}
				c.Close()
			}
		}()
	}
	for i := range aborts {
		work <- i
	}
	close(work)
	wg.Wait()

	waitUntil(t, func() bool { return b.open.Load() <= 1 })   // the warm-up's pooled connection may stay
	waitUntil(t, func() bool { return p.clientConns() <= 1 }) // the warm-up client's
	warm()                                                    // the pool still works
	var fdsAfter int
	waitUntil(t, func() bool { fdsAfter = openFDs(t); return fdsAfter <= fdsBefore+2 })
	t.Logf("%d aborts: %d upstream connections accepted, %d open after; %d descriptors before, %d after", aborts, b.accepted.Load(), b.open.Load(), fdsBefore, fdsAfter)
	if e := errs.all(); len(e) != 0 {
		t.Fatalf("aborted requests are not upstream errors: %q", e[:min(len(e), 5)])
	}
}

// A cancelled request closes its upstream connection itself, even when
// nobody ever closes the answer's body: the connection is neither left
// open nor reusable.
func TestCancelledRequestClosesItsConnection(t *testing.T) {
	closed := make(chan bool, 1)
	b := newRawBackend(t, func(b *rawBackend, c net.Conn, br *bufio.Reader, n int64) {
		if b.readRequest(c, br) == nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
		closed <- untilClosed(c, br, 5*time.Second)
	})
	p := New(Options{})
	target := b.target(p, "v1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://app/", nil)
	resp, err := target.rp.Transport.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	cancel() // the client is gone; the body stays unread and unclosed
	if !<-closed {
		t.Fatal("the connection of a cancelled request is still open")
	}
	if c := target.pool.get(); c != nil {
		t.Fatal("the connection of a cancelled request was pooled")
	}
}
