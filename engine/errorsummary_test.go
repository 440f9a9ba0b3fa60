package engine

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Identical errors: the first is logged at once, the rest once per
// period as a count; after a quiet period the next one is logged at once.
func TestErrorSummary(t *testing.T) {
	var rec eventRecorder
	s := newErrorSummary("proxy error", rec.log)
	s.period = 100 * time.Millisecond
	for i := 0; i < 1000; i++ {
		s.add("connect ECONNREFUSED 127.0.0.1:18000")
	}
	s.add("socket hang up")
	rec.mu.Lock()
	if len(rec.events) != 2 || rec.events[0].data[0].Value != "connect ECONNREFUSED 127.0.0.1:18000" || len(rec.events[0].data) != 1 {
		t.Fatalf("at once: %+v", rec.events)
	}
	rec.mu.Unlock()
	waitFor(t, "the summary", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.events) == 3 })
	rec.mu.Lock()
	if d := rec.events[2].data; d[0].Value != "connect ECONNREFUSED 127.0.0.1:18000" || d[1].Value != 999 || d[2].Value != int64(100) {
		t.Fatalf("summary: %+v", d)
	}
	rec.mu.Unlock()
	// The run ends after a period without repeats.
	waitFor(t, "the run to end", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.runs) == 0 })
	s.add("connect ECONNREFUSED 127.0.0.1:18000")
	rec.mu.Lock()
	if len(rec.events) != 4 || len(rec.events[3].data) != 1 {
		t.Fatalf("after a quiet period: %+v", rec.events)
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
