package main

import (
	"fmt"
	"testing"
	"time"
)

func TestComputeCrashFigures(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	d := func(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
	crashes := []crashSpan{{kill: at(2000), ready: at(3000)}, {kill: at(8000), ready: at(8500)}}
	// req is a request scheduled at start, on a connection opened at
	// dialed and sent at sent (ms; -1: no connection), taking dur.
	req := func(start, dur, dialed, sent int, err string) sample {
		s := sample{start: at(start), dur: d(dur), err: err}
		if dialed >= 0 {
			s.dialed, s.sent = at(dialed), at(sent)
		}
		return s
	}
	samples := []sample{
		req(0, 50, 0, 0, ""), // warm-up: before the first calm second
		// the calm seconds before the kills: 1, 2, 3, 5, 6 → baseline 3
		req(1000, 2, 0, 1000, ""), req(1990, 6, 0, 1990, ""), req(1500, 3, 0, 1500, ""),
		req(7000, 1, 0, 7000, ""), req(7990, 5, 0, 7990, ""),
		// the first crash: out at the kill on a connection from before it
		req(1990, 15, 0, 1990, "EOF"),
		// sent after the kill on a pooled connection the dead daemon held,
		// also long after the restart (the pool is last in, first out)
		req(2100, 1, 1000, 2100, "connection reset"),
		req(6000, 1, 1500, 6000, "EOF"),
		// queued in the backlog while no daemon ran: answered after the restart
		req(2200, 850, 2200, 2200, ""),
		req(2999, 60, 2999, 2999, ""),
		// the same connection reused after the restart: not queued
		req(3100, 1, 2200, 3100, ""),
		// sent before the kill on a connection still in the backlog:
		// out at the kill, answered late, the stall of the first window
		req(1995, 1200, 1995, 1995, ""),
		// unexplained: a connection opened after the kill failed, and a
		// refused connection
		req(4000, 1, 3500, 4000, "EOF"),
		req(2500, 1, -1, 0, "connection refused"),
		// the second crash: out at the kill
		req(7999, 600, 7000, 7999, "timeout"),
		// scheduled before the kill, sent after it (the generator ran
		// late) on a dead connection: not out at the kill
		req(7950, 100, 7000, 8010, "EOF"),
		req(8100, 500, 8100, 8100, ""),
		req(9000, 2, 8100, 9000, ""),
		// a failure before any kill is unexplained
		req(500, 1, 500, 500, "HTTP 502"),
	}
	f := computeCrashFigures(samples, crashes, d(1000))
	want := crashFigures{requests: 20, failed: 8, refused: 1, unexplained: 3, baseline: d(3), windows: []crashWindow{
		{out: 2, inFlight: 1, deadConn: 2, queued: 2, stall: d(1200)},
		{out: 1, inFlight: 1, deadConn: 1, queued: 1, stall: d(500)},
	}}
	if fmt.Sprint(f) != fmt.Sprint(want) {
		t.Fatalf("figures = %+v\nwant      %+v", f, want)
	}
}

func TestComputeCrashFiguresEmpty(t *testing.T) {
	now := time.Now()
	f := computeCrashFigures(nil, []crashSpan{{now, now}}, time.Second)
	if f.requests != 0 || f.baseline != 0 || len(f.windows) != 1 || f.windows[0] != (crashWindow{}) {
		t.Fatalf("figures of no samples = %+v", f)
	}
	// No crash: every failure is unexplained.
	f = computeCrashFigures([]sample{{start: now, dur: time.Second, dialed: now, err: "EOF"}}, nil, time.Second)
	if f.requests != 1 || f.failed != 1 || f.unexplained != 1 {
		t.Fatalf("figures of one failure without a crash = %+v", f)
	}
}
