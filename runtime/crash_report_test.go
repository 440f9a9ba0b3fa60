package runtime

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// The crash report counts exits by cause and restarts, says when the
// policy gave up, wakes Crashed's waiters with the output captured, and
// starts over at a manual start.
func TestCrashReport(t *testing.T) {
	clock := NewFakeClock(epoch)
	one := 1
	spec := baseSpec(t, "echo missing DATABASE_URL >&2; exit 3")
	spec.Restart = RestartPolicy{Delay: 100 * time.Millisecond, MaxRestarts: &one, BackoffFactor: 1}
	p, _ := newProcess(t, spec, clock)
	p.outputWait = time.Minute // the output is checked: wait for it however late its reader runs
	crashed := p.Crashed()
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	select {
	case <-crashed:
	case <-time.After(5 * time.Second):
		t.Fatal("Crashed was not closed at the first exit")
	}
	r := p.CrashReport()
	if r.Exits() != 1 || r.GaveUp || r.Restarts != 0 || len(r.Causes) != 1 || *r.Causes[0].Code != 3 {
		t.Fatalf("after the first exit: %+v", r)
	}
	if logs := p.Status().Logs; len(logs) != 1 || logs[0].Line != "missing DATABASE_URL" {
		t.Fatalf("the output before the exit is captured by the time Crashed closes: %+v", logs)
	}
	crashed = p.Crashed()
	waitFor(t, "the restart to be scheduled", 5*time.Second, func() bool { return len(clock.Pending()) == 1 })
	clock.Advance(100 * time.Millisecond)
	select {
	case <-crashed:
	case <-time.After(5 * time.Second):
		t.Fatal("Crashed was not closed at the second exit")
	}
	r = p.CrashReport()
	if r.Exits() != 2 || !r.GaveUp || r.Restarts != 1 || r.Causes[0].Count != 2 {
		t.Fatalf("after the restart limit: %+v", r)
	}
	crashed = p.Crashed()
	if err := p.Start(ReasonManual); err != nil {
		t.Fatal(err)
	}
	<-crashed
	if r = p.CrashReport(); r.Exits() != 1 || r.Restarts != 0 {
		t.Fatalf("a manual start starts a new report: %+v", r)
	}
}

// A closed GiveUp ends the window at once with the reason of one last
// probe.
func TestHealthCheckGiveUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // refused from now on
	giveUp := make(chan struct{})
	time.AfterFunc(100*time.Millisecond, func() { close(giveUp) })
	h := HealthCheck{Host: "127.0.0.1", Port: port, Path: "/ping", Timeout: time.Minute, Interval: 20 * time.Millisecond, StartDelay: time.Minute, GiveUp: giveUp}
	began := time.Now()
	err = h.Check(context.Background())
	var he *HealthError
	if !errors.As(err, &he) || he.Reason != "connection refused" {
		t.Fatalf("got %v", err)
	}
	if took := time.Since(began); took > 30*time.Second {
		t.Fatalf("the check took %v after GiveUp closed (start delay and window: 1 min each)", took)
	}
}

// An exit stays "settling" until the output written up to it has been
// captured: here a helper outside the process group (so not stopped with
// it) writes the last line through the inherited pipe 50 ms after the
// exit. The wait's bound is lengthened: a loaded machine can run the
// helper's last line more than crashOutputWait after the exit was seen.
func TestCrashReportSettlesAfterTheOutput(t *testing.T) {
	zero := 0
	// The process exits only once the helper runs in its own session.
	spec := baseSpec(t, "setsid sh -c 'echo $$ > helper; sleep 0.05; echo late words >&2' & while [ ! -s helper ]; do sleep 0.01; done; exit 3")
	spec.Restart = RestartPolicy{MaxRestarts: &zero, BackoffFactor: 1}
	p, _ := newProcess(t, spec, NewFakeClock(epoch))
	p.outputWait = time.Minute
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the exit to be settled", 5*time.Second, func() bool {
		r := p.CrashReport()
		return r.Exits() == 1 && r.GaveUp && !r.Settling
	})
	if logs := p.Status().Logs; len(logs) != 1 || logs[0].Line != "late words" {
		t.Fatalf("a settled exit has its output: %+v", logs)
	}
}
