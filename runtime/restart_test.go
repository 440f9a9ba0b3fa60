package runtime

import (
	"os"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

var epoch = time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)

// crashing returns a spec whose command exits with 3 at once.
func crashing(t *testing.T, policy RestartPolicy) Spec {
	spec := baseSpec(t, "exit 3")
	spec.ID = "crasher"
	spec.Restart = policy
	return spec
}

// awaitCrash waits for the n-th exit and the scheduling that follows it.
func awaitCrash(t *testing.T, p *Process, rec *recorder, n int, settled func() bool) {
	t.Helper()
	waitFor(t, "crash "+itoa(n), 5*time.Second, func() bool {
		return rec.count("process exited") >= n && p.State() == StateFailed && settled()
	})
}

// The Node.js rollbridge's timeline: restartDelayMs 200, maxRestarts 2
// within 60 s, backoff 2, cap 1000: respawn after 200 ms, then 400 ms, then
// the restart limit (docs/processes.md#53-a-worked-timeline).
func TestRestartBackoffAndLimit(t *testing.T) {
	clock := NewFakeClock(epoch)
	two := 2
	p, rec := newProcess(t, crashing(t, RestartPolicy{Delay: 200 * time.Millisecond, MaxRestarts: &two, Window: time.Minute, BackoffFactor: 2, MaxDelay: time.Second}), clock)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	pending := func(want ...time.Duration) func() bool {
		return func() bool { return reflect.DeepEqual(clock.Pending(), want) }
	}
	awaitCrash(t, p, rec, 1, pending(200*time.Millisecond))
	clock.Advance(200 * time.Millisecond)
	awaitCrash(t, p, rec, 2, pending(400*time.Millisecond))
	clock.Advance(400 * time.Millisecond)
	awaitCrash(t, p, rec, 3, func() bool { return rec.count("restart limit reached") == 1 })
	if got := clock.Pending(); len(got) != 0 {
		t.Fatalf("no restart is scheduled after the limit: %v", got)
	}
	if got := dataString(rec.find("restart limit reached", 0)); got != "id=crasher maxRestarts=2 windowMs=60000" {
		t.Fatalf("limit event %s", got)
	}
	s := p.Status()
	if s.Restarts != 2 || s.State != StateFailed || s.ExitCode == nil || *s.ExitCode != 3 || s.ExitSignal != nil || s.LastStartReason != "crash" {
		t.Fatalf("status %+v", s)
	}
	if got := dataString(rec.find("process started", 2)); got != "command=exit 3 id=crasher pid="+itoa(pidOf(rec, 2))+" reason=crash" {
		t.Fatalf("third start %s", got)
	}

	// A manual start forgets the history: the process gets its restarts back.
	if err := p.Start(ReasonManual); err != nil {
		t.Fatal(err)
	}
	awaitCrash(t, p, rec, 4, pending(200*time.Millisecond))
}

func pidOf(rec *recorder, n int) int {
	for _, f := range rec.find("process started", n) {
		if f.Key == "pid" {
			return f.Value.(int)
		}
	}
	return -1
}

func TestBackoffIsCappedAndConstantPolicyHasNoLimit(t *testing.T) {
	clock := NewFakeClock(epoch)
	p, rec := newProcess(t, crashing(t, RestartPolicy{Delay: 100 * time.Millisecond, BackoffFactor: 3, MaxDelay: 500 * time.Millisecond}), clock)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{100, 300, 500, 500} {
		want *= time.Millisecond
		awaitCrash(t, p, rec, i+1, func() bool { return reflect.DeepEqual(clock.Pending(), []time.Duration{want}) })
		clock.Advance(want)
	}
	awaitCrash(t, p, rec, 5, func() bool { return len(clock.Pending()) == 1 })
	p.Stop()
	if len(clock.Pending()) != 0 || p.State() != StateStopped {
		t.Fatal("Stop cancels the pending restart")
	}

	// The fast path: constant delay, unlimited restarts.
	clock2 := NewFakeClock(epoch)
	q, qrec := newProcess(t, crashing(t, RestartPolicy{Delay: 250 * time.Millisecond, BackoffFactor: 1}), clock2)
	if err := q.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		awaitCrash(t, q, qrec, i, func() bool { return reflect.DeepEqual(clock2.Pending(), []time.Duration{250 * time.Millisecond}) })
		clock2.Advance(250 * time.Millisecond)
	}
	q.Stop()
	if s := q.Status(); s.Restarts != 5 {
		t.Fatalf("restarts %d", s.Restarts)
	}
}

func TestRestartWindowForgetsOldRestarts(t *testing.T) {
	clock := NewFakeClock(epoch)
	one := 1
	p, rec := newProcess(t, crashing(t, RestartPolicy{Delay: 100 * time.Millisecond, MaxRestarts: &one, Window: time.Second, BackoffFactor: 1}), clock)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	awaitCrash(t, p, rec, 1, func() bool { return len(clock.Pending()) == 1 })
	clock.Advance(100 * time.Millisecond)
	awaitCrash(t, p, rec, 2, func() bool { return rec.count("restart limit reached") == 1 })
	// Past the window the earlier restart no longer counts.
	clock.Advance(2 * time.Second)
	if err := p.Start(ReasonCrash); err != nil { // as if revived by the next crash restart
		t.Fatal(err)
	}
	awaitCrash(t, p, rec, 3, func() bool { return len(clock.Pending()) == 1 })
}

// The gate is asked at the crash and again when the timer fires.
func TestRestartGate(t *testing.T) {
	clock := NewFakeClock(epoch)
	var open atomic.Bool
	spec := crashing(t, RestartPolicy{Delay: 100 * time.Millisecond, BackoffFactor: 1})
	spec.CanRestart = open.Load
	p, rec := newProcess(t, spec, clock)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	// The exit is reported before the restart policy decides; the crash
	// report settles after the decision.
	waitFor(t, "the exit to be settled", 5*time.Second, func() bool {
		return rec.count("process exited") == 1 && p.State() == StateFailed && !p.CrashReport().Settling
	})
	if len(clock.Pending()) != 0 || !p.CrashReport().GaveUp {
		t.Fatalf("a closed gate schedules no restart: pending %v, report %+v", clock.Pending(), p.CrashReport())
	}
	open.Store(true)
	if err := p.Start(ReasonManual); err != nil {
		t.Fatal(err)
	}
	awaitCrash(t, p, rec, 2, func() bool { return len(clock.Pending()) == 1 })
	open.Store(false) // e.g. the release started draining meanwhile
	clock.Advance(100 * time.Millisecond)
	if rec.count("process started") != 2 || p.Status().Restarts != 0 {
		t.Fatalf("the timer restarted a process whose gate had closed: %v", rec.messages())
	}
}

// A respawn that fails is reported and treated as another crash.
func TestFailedRespawnContinuesThePolicy(t *testing.T) {
	clock := NewFakeClock(epoch)
	spec := crashing(t, RestartPolicy{Delay: 100 * time.Millisecond, BackoffFactor: 1})
	p, rec := newProcess(t, spec, clock)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	awaitCrash(t, p, rec, 1, func() bool { return len(clock.Pending()) == 1 })
	if err := os.Remove(spec.Dir); err != nil {
		t.Fatal(err)
	}
	clock.Advance(100 * time.Millisecond)
	data := rec.find("process restart failed", 0)
	if len(data) != 2 || data[0].Value != "cannot start crasher: working directory "+spec.Dir+" does not exist" {
		t.Fatalf("restart failed event %v", data)
	}
	if got := clock.Pending(); !reflect.DeepEqual(got, []time.Duration{100 * time.Millisecond}) {
		t.Fatalf("supervision goes on after a failed respawn: %v", got)
	}
	if err := os.Mkdir(spec.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	clock.Advance(100 * time.Millisecond)
	awaitCrash(t, p, rec, 2, func() bool { return len(clock.Pending()) == 1 })
	if s := p.Status(); s.Restarts != 2 {
		t.Fatalf("restarts %d", s.Restarts)
	}
	p.Stop()
}
