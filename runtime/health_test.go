package runtime

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func hostPort(t *testing.T, rawURL string) (string, int) {
	t.Helper()
	u := strings.TrimPrefix(rawURL, "http://")
	host, port, err := net.SplitHostPort(u)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

func TestHealthCheckPassesAfterFailures(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			http.Redirect(w, r, "/ok", http.StatusFound)
			return
		}
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	host, port := hostPort(t, srv.URL)
	h := HealthCheck{Host: host, Port: port, Path: "/ping", Timeout: 10 * time.Second, Interval: 10 * time.Millisecond}
	if err := h.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 {
		t.Fatalf("probes %d", calls.Load())
	}
}

func TestHealthCheckFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	host, port := hostPort(t, srv.URL)
	h := HealthCheck{Host: host, Port: port, Path: "/ping", Timeout: 200 * time.Millisecond, Interval: 20 * time.Millisecond}
	err := h.Check(context.Background())
	want := "Health check failed for http://127.0.0.1:" + itoa(port) + "/ping: HTTP 500"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}

	// Refused: a port nothing listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	h = HealthCheck{Host: "127.0.0.1", Port: closed, Path: "/ping", Timeout: 100 * time.Millisecond, Interval: 10 * time.Millisecond}
	var he *HealthError
	if err := h.Check(context.Background()); !errors.As(err, &he) || he.Reason != "connection refused" {
		t.Fatalf("refused: %v", err)
	}

	// No attempt fits in a window that is already over.
	h.Timeout = -time.Second
	if err := h.Check(context.Background()); !errors.As(err, &he) || he.Reason != "no attempts" {
		t.Fatalf("no attempts: %v", err)
	}
}

// A server that accepts and never answers cannot stall the check past its
// window: each probe has its own timeout (docs/processes.md#7-health-checks).
func TestHealthCheckProbeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answer
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	h := HealthCheck{Host: "127.0.0.1", Port: port, Path: "/ping", Timeout: 1500 * time.Millisecond, Interval: 100 * time.Millisecond}
	var he *HealthError
	err = h.Check(context.Background())
	if !errors.As(err, &he) || !strings.HasPrefix(he.Reason, "timeout after ") || !strings.HasSuffix(he.Reason, "ms") {
		t.Fatalf("got %v", err)
	}
	n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(he.Reason, "timeout after "), "ms"))
	if n < 1 || n > 1000 {
		t.Fatalf("the last probe's timeout is capped by the window: %s", he.Reason)
	}
}

func TestHealthCheckCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h := HealthCheck{Host: "127.0.0.1", Port: 1, Path: "/", Timeout: time.Minute, Interval: time.Second, StartDelay: time.Minute}
	if err := h.Check(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestHealthURLBracketsIPv6(t *testing.T) {
	if got := (HealthCheck{Host: "::1", Port: 18000, Path: "/ping"}).URL(); got != "http://[::1]:18000/ping" {
		t.Fatal(got)
	}
	if got := (HealthCheck{Host: "localhost", Port: 80, Path: "health"}).URL(); got != "http://localhost:80health" {
		t.Fatal(got) // the path is not checked to start with "/", as in the reference
	}
}

func TestProbeBind(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if r, code := ProbeBind("127.0.0.1", port); r != BindInUse || code != "EADDRINUSE" {
		t.Fatalf("held port: %v %s", r, code)
	}
	ln.Close()
	if r, _ := ProbeBind("127.0.0.1", port); r != BindFree {
		t.Fatalf("released port: %v", r)
	}
	// An address this host does not have cannot be bound at all.
	if r, code := ProbeBind("192.0.2.1", port); r != BindUnavailable || code != "EADDRNOTAVAIL" {
		t.Fatalf("foreign address: %v %s", r, code)
	}
	p, err := EphemeralPort("127.0.0.1")
	if err != nil || p <= 0 {
		t.Fatalf("ephemeral %d %v", p, err)
	}
	var pe *PortError
	if _, err := EphemeralPort("192.0.2.1"); !errors.As(err, &pe) || pe.Code != "EADDRNOTAVAIL" {
		t.Fatalf("ephemeral on a foreign address: %v", err)
	}
}
