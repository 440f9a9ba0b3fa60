package main

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestComputeHoldFigures(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	d := func(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
	windows := []span{{at(1000), at(3000)}, {at(5000), at(7000)}}
	samples := []sample{
		// outside: 2, 3, 4, 5, 100 ms → median 4 ms
		{start: at(0), dur: d(2)},
		{start: at(500), dur: d(3)},
		{start: at(4000), dur: d(4)},
		{start: at(3600), dur: d(5)}, // just past the first window's margin
		{start: at(9000), dur: d(100)},
		// in the first window (begin inclusive), and in its margin
		{start: at(1000), dur: d(2100)},
		{start: at(3400), dur: d(2200)}, // released just after the reply
		// in the second window
		{start: at(6999), dur: d(1900)},
		// failures count as requests, never as latency
		{start: at(5500), dur: d(9000), err: "HTTP 503"},
		{start: at(200), dur: d(50000), err: "EOF"},
	}
	f := computeHoldFigures(samples, windows, d(500))
	want := holdFigures{requests: 10, failed: 2, medianOutside: d(4), longest: d(2200), added: d(2196),
		perWindow: []time.Duration{d(2200), d(1900)}}
	if fmt.Sprint(f) != fmt.Sprint(want) {
		t.Fatalf("figures = %+v, want %+v", f, want)
	}
}

func TestComputeHoldFiguresEmpty(t *testing.T) {
	f := computeHoldFigures(nil, []span{{time.Now(), time.Now()}}, time.Second)
	if f.requests != 0 || f.added != 0 || f.medianOutside != 0 || len(f.perWindow) != 1 || f.perWindow[0] != 0 {
		t.Fatalf("figures of no samples = %+v", f)
	}
	// All requests failed: nothing to subtract from.
	f = computeHoldFigures([]sample{{start: time.Now(), dur: time.Second, err: "EOF"}}, nil, 0)
	if f.requests != 1 || f.failed != 1 || f.longest != 0 || f.added != 0 {
		t.Fatalf("figures of one failure = %+v", f)
	}
}

// TestOpenLoopKeepsSending checks that the generator keeps to its schedule
// while no answer comes (a closed-loop client would stop at its number of
// connections), and that a request's latency runs from its scheduled time.
func TestOpenLoopKeepsSending(t *testing.T) {
	var waiting atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		waiting.Add(1)
		<-release
		w.Write([]byte("ok\n"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		once.Do(func() { close(release) })
		srv.Close()
	})

	stop := make(chan struct{})
	resCh := make(chan loadResult)
	go func() {
		resCh <- runOpenLoop(openLoad{addr: ln.Addr().String(), path: "/", rate: 500, idle: 4, timeout: 30 * time.Second, stop: stop})
	}()
	const want = 40 // ten times the idle connections kept
	deadline := time.Now().Add(20 * time.Second)
	for waiting.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests reached the server while none was answered; want %d", waiting.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	heldFor := time.Now()
	time.Sleep(50 * time.Millisecond) // the first request waits at least this long: its latency must show it
	once.Do(func() { close(release) })
	close(stop)
	res := <-resCh
	ok, failed := res.count()
	if failed != 0 {
		t.Fatalf("%d requests failed: %s", failed, res.firstErrors())
	}
	if ok < want {
		t.Fatalf("%d requests answered, want at least %d", ok, want)
	}
	var first sample
	for _, s := range res.samples {
		if first.start.IsZero() || s.start.Before(first.start) {
			first = s
		}
	}
	if min := heldFor.Add(50 * time.Millisecond).Sub(first.start); first.dur < min {
		t.Fatalf("the first request took %v, but it was held for at least %v", first.dur, min)
	}
}
