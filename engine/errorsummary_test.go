package engine

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Identical errors: the first is logged at once, the rest once per
// period as a count; after a quiet period the next one is logged at once.
// Which period a repeat falls in is the scheduler's choice: a loaded
// machine stalled the loop below past a period (a summary of 998 came
// before the 1,000th error), so the lines are checked by what they add up
// to, every error in exactly one of them, not by when each came.
func TestErrorSummary(t *testing.T) {
	const refused = "connect ECONNREFUSED 127.0.0.1:18000"
	var rec eventRecorder
	s := newErrorSummary("proxy error", rec.log)
	s.period = 100 * time.Millisecond
	s.add(refused)
	rec.mu.Lock()
	if len(rec.events) != 1 || rec.events[0].data[0].Value != refused || len(rec.events[0].data) != 1 {
		t.Fatalf("the first at once: %+v", rec.events)
	}
	rec.mu.Unlock()
	for i := 1; i < 1000; i++ {
		s.add(refused)
	}
	s.add("socket hang up")
	rec.mu.Lock()
	hangUp := 0
	for _, e := range rec.events {
		if e.data[0].Value == "socket hang up" && len(e.data) == 1 {
			hangUp++
		}
	}
	if hangUp != 1 {
		t.Fatalf("another error at once: %+v", rec.events)
	}
	rec.mu.Unlock()
	// The runs end after a period without repeats.
	waitFor(t, "the runs to end", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.runs) == 0 })
	rec.mu.Lock()
	atOnce, summaries, counted := 0, 0, 0
	for _, e := range rec.events {
		switch {
		case e.data[0].Value != refused:
		case len(e.data) == 1:
			atOnce++
		case e.data[2].Value != int64(100):
			t.Fatalf("summary: %+v", e.data)
		default:
			summaries++
			counted += e.data[1].Value.(int)
		}
	}
	// Unloaded, that is one line at once and one summary of 999; each
	// period the loop was stalled past can add one.
	if atOnce+counted != 1000 || summaries == 0 || atOnce+summaries > 10 {
		t.Fatalf("1,000 errors in %d lines at once and %d summaries of %d: %+v", atOnce, summaries, counted, rec.events)
	}
	n := len(rec.events)
	rec.mu.Unlock()
	s.add(refused)
	rec.mu.Lock()
	if len(rec.events) != n+1 || len(rec.events[n].data) != 1 {
		t.Fatalf("after a quiet period: %+v", rec.events[n:])
	}
	rec.mu.Unlock()
}

// Made-up error texts cannot grow the tracking without bound or flood
// the log: kinds beyond the limit share one count.
func TestErrorSummaryBoundsKinds(t *testing.T) {
	var rec eventRecorder
	s := newErrorSummary("proxy error", rec.log)
	s.period = time.Hour
	for i := 0; i < 10000; i++ {
		s.add("malformed HTTP status code " + strconv.Itoa(i))
	}
	if len(s.runs) != maxErrorKinds+1 || len(rec.events) != maxErrorKinds+1 || s.runs[otherErrors].more != 10000-maxErrorKinds-1 {
		t.Fatalf("%d kinds tracked, %d events, %d others", len(s.runs), len(rec.events), s.runs[otherErrors].more)
	}
	var one eventRecorder
	newErrorSummary("proxy error", one.log).add(strings.Repeat("x", 100000))
	if text := one.events[0].data[0].Value.(string); len(text) != maxErrorText+len("…") {
		t.Fatalf("a %d-byte error text was logged", len(text))
	}
}
