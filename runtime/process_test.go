package runtime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestStartStatusAndStop(t *testing.T) {
	spec := baseSpec(t, fixture+" -lines 3 -stderr oops")
	spec.ID, spec.Cwd = "web", "backend"
	p, rec := newProcess(t, spec, nil)
	if s := p.Status(); s.State != StateStopped || s.PID != 0 || s.StartedAt != nil {
		t.Fatalf("a new process is stopped and never started: %+v", s)
	}
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 captured lines", 5*time.Second, func() bool { return len(p.Status().Logs) == 4 })
	s := p.Status()
	if s.State != StateRunning || s.PID == 0 || s.StartedAt == nil || s.UptimeMs == nil || s.LastStartReason != "deploy" || s.Exited {
		t.Fatalf("running status: %+v", s)
	}
	var stderr []string
	for _, l := range s.Logs {
		if l.Stream == "stderr" {
			stderr = append(stderr, l.Line)
		}
	}
	if !reflect.DeepEqual(stderr, []string{"oops"}) {
		t.Fatalf("stderr lines %v", stderr)
	}
	started := rec.find("process started", 0)
	if got := dataString(started); got != "command="+spec.Command+" id=web pid="+itoa(s.PID)+" reason=deploy" {
		t.Fatalf("process started data: %s", got)
	}
	if err := p.Start(ReasonManual); err != nil || p.PID() != s.PID {
		t.Fatalf("Start on a running process is a no-op: %v", err)
	}

	p.Stop()
	s = p.Status()
	if s.State != StateStopped || s.PID != 0 || s.UptimeMs != nil || !s.Exited || s.ExitCode != nil || s.ExitSignal == nil || *s.ExitSignal != "SIGTERM" {
		t.Fatalf("stopped status: %+v", s)
	}
	if got := dataString(rec.find("process exited", 0)); got != "code=<nil> id=web signal=SIGTERM" {
		t.Fatalf("process exited data: %s", got)
	}
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	want := []string{"children", "command", "cwd", "exitCode", "exitSignal", "id", "lastStartReason", "logs", "memoryRestarts", "restarts", "startedAt", "state"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("status keys %v\nwant %v", keys, want)
	}
	if !strings.Contains(string(raw), `"children":[],`) || !strings.Contains(string(raw), `"exitCode":null,"exitSignal":"SIGTERM"`) {
		t.Fatalf("status JSON: %s", raw)
	}
	if rec.count("process stop timed out; sending SIGKILL") != 0 {
		t.Fatal("a process that obeys SIGTERM is not SIGKILLed")
	}
}

// The stop sequence runs quiet, drain and stop hooks in order with
// ROLLBRIDGE_PID, reports a failing hook and goes on, and SIGKILLs the
// group after gracefulStopMs (docs/processes.md#42-lifecycle-hooks).
func TestStopSequenceHooks(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "hooks.log")
	spec := baseSpec(t, fixture+" -ignore SIGTERM")
	spec.ID = "hooks"
	spec.GracefulStop = 700 * time.Millisecond
	spec.Lifecycle = Lifecycle{
		QuietCommand: "echo quiet pid=$ROLLBRIDGE_PID >> " + log,
		DrainCommand: "echo drain >> " + log + "; exit 4",
		DrainTimeout: 2 * time.Second,
		StopCommand:  "echo stop pid=$ROLLBRIDGE_PID >> " + log,
	}
	p, rec := newProcess(t, spec, nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	p.Stop()
	data, _ := os.ReadFile(log)
	if want := "quiet pid=" + itoa(pid) + "\ndrain\nstop pid=" + itoa(pid) + "\n"; string(data) != want {
		t.Fatalf("hooks ran as\n%s\nwant\n%s", data, want)
	}
	msgs := rec.messages()
	want := []string{"process started", "drain command exited non-zero", "process stop timed out; sending SIGKILL", "process exited"}
	if !reflect.DeepEqual(msgs, want) {
		t.Fatalf("events %v\nwant %v", msgs, want)
	}
	if got := dataString(rec.find("drain command exited non-zero", 0)); got != "code=4 id=hooks" {
		t.Fatalf("drain event: %s", got)
	}
	if got := dataString(rec.find("process stop timed out; sending SIGKILL", 0)); got != "id=hooks pid="+itoa(pid) {
		t.Fatalf("SIGKILL event: %s", got)
	}
	if got := dataString(rec.find("process exited", 0)); got != "code=<nil> id=hooks signal=SIGKILL" {
		t.Fatalf("exit event: %s", got)
	}
	if s := p.Status(); s.State != StateStopped || groupAlive(pid) {
		t.Fatalf("after stop: %s, group alive %v", s.State, groupAlive(pid))
	}
}

func TestStopSignalGracefulExit(t *testing.T) {
	dir := t.TempDir()
	sigs := filepath.Join(dir, "signals")
	ready := filepath.Join(dir, "ready")
	spec := baseSpec(t, "exec "+fixture+" -on-signal SIGINT -signal-file "+sigs+" -exit-after 100ms -pid-file "+ready)
	spec.StopSignal = syscall.SIGINT
	p, rec := newProcess(t, spec, nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitForFile(t, ready) // written once the trap is installed
	p.Stop()
	if got := fileLines(t, sigs); !reflect.DeepEqual(got, []string{"SIGINT"}) {
		t.Fatalf("signals received: %v", got)
	}
	s := p.Status()
	if s.ExitCode == nil || *s.ExitCode != 0 || s.ExitSignal != nil || rec.count("process stop timed out; sending SIGKILL") != 0 {
		t.Fatalf("a worker that drains on SIGINT exits 0 without SIGKILL: %+v", s)
	}
}

// Signals go to the whole group: grandchildren that ignore SIGTERM are
// SIGKILLed with it, and nothing of the group is left after Stop.
func TestStopKillsGrandchildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	spec := baseSpec(t, fixture+" -ignore SIGTERM -grandchildren 3 -pid-file "+pidFile)
	spec.GracefulStop = 200 * time.Millisecond
	p, rec := newProcess(t, spec, nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pid file", 5*time.Second, func() bool { _, err := os.Stat(pidFile); return err == nil })
	pids := readPids(t, pidFile)
	if len(pids) != 4 {
		t.Fatalf("pids %v", pids)
	}
	p.Stop()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("group member %d survived the stop", pid)
		}
	}
	if rec.count("process stop timed out; sending SIGKILL") != 1 {
		t.Fatalf("events %v", rec.messages())
	}
}

// A command that forks and exits leaves its child in the group; the child
// is stopped when the leader's exit is seen, and the process is "failed".
func TestForkAndExitLeavesNothing(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	spec := baseSpec(t, fixture+" -sleep & echo $! > "+pidFile+"; exit 0")
	spec.GracefulStop = 300 * time.Millisecond
	zero := 0
	spec.Restart = RestartPolicy{Delay: time.Millisecond, BackoffFactor: 1, MaxRestarts: &zero}
	p, rec := newProcess(t, spec, nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "restart limit reached", 5*time.Second, func() bool { return rec.count("restart limit reached") == 1 })
	child := readPids(t, pidFile)[0]
	if alive(child) {
		t.Fatalf("the forked child %d outlived its exited leader", child)
	}
	s := p.Status()
	if s.State != StateFailed || s.ExitCode == nil || *s.ExitCode != 0 {
		t.Fatalf("status %+v", s)
	}
	p.Stop()
	if p.State() != StateStopped {
		t.Fatal("Stop of a failed process leaves it stopped")
	}
}

func TestIndefiniteGracefulStopNeverKills(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	spec := baseSpec(t, "exec "+fixture+" -on-signal SIGTERM -exit-after 400ms -pid-file "+ready)
	spec.Indefinite = true
	spec.GracefulStop = 0
	p, rec := newProcess(t, spec, nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitForFile(t, ready)
	p.Stop()
	if rec.count("process stop timed out; sending SIGKILL") != 0 {
		t.Fatal("gracefulStopMs: \"indefinite\" never sends SIGKILL")
	}
	if s := p.Status(); s.ExitCode == nil || *s.ExitCode != 0 {
		t.Fatalf("status %+v", s)
	}
}

// A hook that hangs is killed at its bound with its whole group, and the
// sequence goes on. (The bound leaves a loaded machine time to start the
// hook's shell and let it write its pid: 300 ms was seen to be too short.)
func TestHangingHookIsBounded(t *testing.T) {
	dir := t.TempDir()
	hookPid := filepath.Join(dir, "hook.pid")
	spec := baseSpec(t, fixture)
	spec.GracefulStop = time.Second
	spec.Lifecycle.QuietCommand = "echo $$ > " + hookPid + "; sleep 30 & wait"
	p, rec := newProcess(t, spec, nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if got := dataString(rec.find("quiet command timed out", 0)); got != "id=proc timeoutMs=1000" {
		t.Fatalf("timeout event %q in %v", got, rec.messages())
	}
	// SIGKILL ends the group's members once each runs again, which on a
	// busy machine can come after the sequence went on (the shell is
	// reaped; its child may not have died yet): a group that was not
	// killed would hold its `sleep 30` past the deadline.
	hook := readPids(t, hookPid)[0]
	waitFor(t, "the hung hook's group to go", 5*time.Second, func() bool { return !groupAlive(hook) })
	if p.State() != StateStopped {
		t.Fatal("the sequence went on to stop the process")
	}
}

func TestHookThatCannotStart(t *testing.T) {
	spec := baseSpec(t, fixture)
	spec.Lifecycle.QuietCommand = "true"
	p, rec := newProcess(t, spec, nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	// The working directory vanishes: the hook cannot start there.
	if err := os.Remove(spec.Dir); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	data := rec.find("quiet command failed", 0)
	if len(data) != 2 || data[0].Key != "error" || !strings.Contains(data[0].Value.(string), "no such file or directory") || data[1].Value != "proc" {
		t.Fatalf("quiet command failed event: %v (events %v)", data, rec.messages())
	}
	if p.State() != StateStopped {
		t.Fatal("the failing hook does not stop the sequence")
	}
}

func TestConcurrentStopsShareOneRun(t *testing.T) {
	log := filepath.Join(t.TempDir(), "quiet")
	spec := baseSpec(t, fixture)
	spec.Lifecycle.QuietCommand = "echo quiet >> " + log
	p, _ := newProcess(t, spec, nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop()
			if s := p.State(); s != StateStopped {
				t.Errorf("Stop returned in state %s", s)
			}
		}()
	}
	wg.Wait()
	if got := fileLines(t, log); len(got) != 1 {
		t.Fatalf("the quiet hook ran %d times", len(got))
	}
}

func TestBadCommandAndWorkingDirectory(t *testing.T) {
	spec := baseSpec(t, "definitely-not-a-command-rollbridge")
	zero := 0
	spec.Restart.MaxRestarts = &zero
	p, rec := newProcess(t, spec, nil)
	p.outputWait = time.Minute // the output is checked: wait for it however late its reader runs
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	// The exit is recorded when the shell is reaped, which can come before
	// its message is read from the pipe; a settled crash report is the
	// point from which the output is known to be captured.
	waitFor(t, "the exit to be settled", 5*time.Second, func() bool {
		return p.State() == StateFailed && rec.count("restart limit reached") == 1 && !p.CrashReport().Settling
	})
	s := p.Status()
	if s.ExitCode == nil || *s.ExitCode != 127 || len(s.Logs) != 1 || !strings.Contains(s.Logs[0].Line, "not found") {
		t.Fatalf("a missing command exits 127 with the shell's message: code %v logs %+v", nullableInt(s.ExitCode), s.Logs)
	}

	spec = baseSpec(t, fixture)
	spec.Dir = filepath.Join(t.TempDir(), "nope")
	q, qrec := newProcess(t, spec, nil)
	err := q.Start(ReasonDeploy)
	if err == nil || err.Error() != "cannot start proc: working directory "+spec.Dir+" does not exist" {
		t.Fatalf("start in a missing cwd: %v", err)
	}
	if q.State() != StateFailed || q.PID() != 0 || len(qrec.messages()) != 0 {
		t.Fatalf("state %s pid %d events %v", q.State(), q.PID(), qrec.messages())
	}
}

// StopAsync reports the end of the quiet phase before the stop finishes.
func TestStopAsyncReportsQuiesce(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "quiet")
	spec := baseSpec(t, fixture+" -on-signal SIGTERM -exit-after 300ms")
	spec.Lifecycle.QuietCommand = "touch " + marker
	p, _ := newProcess(t, spec, nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	quiesced, done := p.StopAsync()
	<-quiesced
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("quiesced before the quiet hook ran: %v", err)
	}
	if st := p.State(); st != StateStopping {
		t.Fatalf("state after the quiet phase: %s", st)
	}
	q2, d2 := p.StopAsync() // joins the running stop
	<-done
	<-q2
	<-d2
	if p.State() != StateStopped || p.PID() != 0 {
		t.Fatalf("after the stop: %s pid %d", p.State(), p.PID())
	}
}

// The exit of a stopped process is reported before Stop returns, so the
// events of whatever follows the stop (a release stopped, a reply to
// "rollbridge stop") never come ahead of it, also when the event's
// consumer is slow.
func TestStopReturnsAfterTheExitIsReported(t *testing.T) {
	stopped := make(chan struct{})
	var exitSeen atomic.Bool
	p := New(baseSpec(t, fixture), Options{OnEvent: func(e Event) {
		if e.Message != "process exited" {
			return
		}
		// A slow consumer: held until Stop returns, or for a second
		// when Stop waits for it.
		select {
		case <-stopped:
		case <-time.After(time.Second):
		}
		exitSeen.Store(true)
	}})
	failIfGroupOutlives(t, p)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	reported := exitSeen.Load()
	close(stopped)
	if !reported {
		t.Fatal("Stop returned before the process exited event was delivered")
	}
}

// Once a spawned child's pid is gone (reaped: kill -0 fails), PID and
// Status no longer report it, however late the goroutine that reaped it
// runs on: a --before-switch command that killed the web process and
// waited for its pid to go must find the deploy's check see it exited.
// afterReap delays the record of the exit; reaped and recorded apart,
// PID still named the dead child during that delay.
func TestReapedChildIsNeverReportedRunning(t *testing.T) {
	delay := func() { time.Sleep(300 * time.Millisecond) }
	afterReap.Store(&delay)
	t.Cleanup(func() { afterReap.Store(nil) })
	p, _ := newProcess(t, baseSpec(t, "exec "+fixture), nil)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop) // no restart after the test
	pid := p.PID()
	if pid == 0 {
		t.Fatal("no pid after Start")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// A zombie still answers kill -0; ESRCH means it was reaped.
	waitFor(t, "the child to be reaped", 10*time.Second, func() bool {
		return syscall.Kill(pid, 0) == syscall.ESRCH
	})
	if got := p.PID(); got != 0 {
		t.Fatalf("PID() = %d after that pid was reaped", got)
	}
	if s := p.Status(); s.State == StateRunning || s.PID != 0 {
		t.Fatalf("status after the reap: state %s, pid %d", s.State, s.PID)
	}
}
