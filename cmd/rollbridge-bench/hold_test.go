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
	deploys := []span{{at(2000), at(4000)}, {at(8000), at(9000)}}
	samples := []sample{
		{start: at(0), dur: d(50)}, // warm-up: before the first calm second
		// the calm second before the first deploy; with the second deploy's:
		// 2, 3, 4, 5, 6, 7 → baseline 4 (the lower of the middle two)
		{start: at(1000), dur: d(2)}, {start: at(1500), dur: d(4)}, {start: at(1999), dur: d(6)}, {start: at(1700), dur: d(7)},
		// the first deploy's window runs until 7000, the next calm second
		{start: at(2000), dur: d(2300)}, // held from the start
		{start: at(3999), dur: d(600)},
		{start: at(4500), dur: d(300)}, // slowed after the exit
		{start: at(5200), dur: d(101)}, // the last slowed one: 1200 ms after the exit
		{start: at(6000), dur: d(50)},
		{start: at(6500), dur: d(100)}, // not over the threshold
		{start: at(6999), dur: d(90)},
		// the calm second before the second deploy
		{start: at(7000), dur: d(3)}, {start: at(7500), dur: d(5)},
		// the second deploy's window runs to the end
		{start: at(8000), dur: d(2100)},
		{start: at(9000), dur: d(120)}, // slowed, right at the exit
		{start: at(9300), dur: d(99)},
		// a failure counts as a request, never as a latency
		{start: at(8500), dur: d(30000), err: "HTTP 503"},
	}
	f := computeHoldFigures(samples, deploys, d(1000), d(100))
	want := holdFigures{requests: 18, failed: 1, baseline: d(4), longest: d(2300), added: d(2296),
		windows: []holdWindow{{longest: d(2300), slowFor: d(1200)}, {longest: d(2100), slowFor: 0}}}
	if fmt.Sprint(f) != fmt.Sprint(want) {
		t.Fatalf("figures = %+v\nwant      %+v", f, want)
	}
}

func TestComputeHoldFiguresEmpty(t *testing.T) {
	now := time.Now()
	f := computeHoldFigures(nil, []span{{now, now}}, time.Second, time.Second)
	if f.requests != 0 || f.added != 0 || f.baseline != 0 || len(f.windows) != 1 || f.windows[0] != (holdWindow{}) {
		t.Fatalf("figures of no samples = %+v", f)
	}
	// All requests failed: nothing to subtract from.
	f = computeHoldFigures([]sample{{start: now, dur: time.Second, err: "EOF"}}, nil, time.Second, time.Second)
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

	finishLoad := startOpenLoop(openLoad{addr: ln.Addr().String(), path: "/", rate: 500, idle: 4, timeout: 30 * time.Second})
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
	res := finishLoad()
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
