package runtime

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// outside is a command started the way an earlier daemon left it: in its
// own session, not spawned by the Process that adopts it. It is a child
// of the test process, so the test reaps it.
type outside struct {
	cmd      *exec.Cmd
	pid      int
	stdin    io.WriteCloser
	reapOnce sync.Once
	reaped   chan struct{}
}

// reap collects the command's exit status, once, in the background.
func (o *outside) reap() {
	o.reapOnce.Do(func() {
		go func() { _ = o.cmd.Wait(); close(o.reaped) }()
	})
}

// startOutside starts command through /bin/sh in a new session with
// stdin on a pipe the test writes to and, when pipes is set, stdout and
// stderr on pipes whose read ends are returned in the Adopted. reap
// starts reaping at once; otherwise the test calls o.reap() itself. The
// group is killed and reaped when the test ends.
func startOutside(t *testing.T, command string, pipes, reap bool) (*outside, Adopted) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var a Adopted
	var writeEnds []*os.File
	if pipes {
		outR, outW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = outW, errW
		a.Stdout, a.Stderr = outR, errR
		writeEnds = []*os.File{outW, errW}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range writeEnds {
		f.Close()
	}
	o := &outside{cmd: cmd, pid: cmd.Process.Pid, stdin: stdin, reaped: make(chan struct{})}
	t.Cleanup(func() {
		_ = syscall.Kill(-o.pid, syscall.SIGKILL)
		o.reap()
		<-o.reaped
	})
	if reap {
		o.reap()
	}
	ticks, ok := StartTime(o.pid)
	if !ok {
		t.Fatalf("no start time for pid %d", o.pid)
	}
	a.PID, a.StartTime = o.pid, ticks
	return o, a
}

// adoptForTest adopts a, records its events, and fails the test when the
// process group is still alive at the end.
func adoptForTest(t *testing.T, spec Spec, opts Options, a Adopted) (*Process, *recorder) {
	t.Helper()
	rec := &recorder{}
	opts.OnEvent = rec.add
	p, err := Adopt(spec, opts, a)
	if err != nil {
		t.Fatal(err)
	}
	failIfGroupOutlives(t, p)
	return p, rec
}

// pipesRecorder records OnPipes calls; it closes the duplicates it gets.
type pipesRecorder struct {
	mu    sync.Mutex
	calls []OutputPipes // files set to nil once closed
	// read, when set, is called with the duplicates before they are closed.
	read func(OutputPipes)
}

func (r *pipesRecorder) add(op OutputPipes) {
	if r.read != nil && !op.Closed {
		r.read(op)
	}
	for _, f := range []*os.File{op.Stdout, op.Stderr} {
		if f != nil {
			f.Close()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, op)
}

func (r *pipesRecorder) get() []OutputPipes {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]OutputPipes(nil), r.calls...)
}

// count is the number of calls for pid with Closed as given.
func (r *pipesRecorder) count(pid int, closed bool) int {
	n := 0
	for _, c := range r.get() {
		if c.PID == pid && c.Closed == closed {
			n++
		}
	}
	return n
}

// jsonKeys lists the top-level keys of a JSON object in order.
func jsonKeys(t *testing.T, raw []byte) []string {
	t.Helper()
	var keys []string
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func hasLine(logs []OutputEntry, stream, line string) bool {
	for _, l := range logs {
		if l.Stream == stream && l.Line == line {
			return true
		}
	}
	return false
}

// procState is the state letter /proc shows for pid, 0 when it has none.
func procState(pid int) byte {
	data, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	st, ok := parseStat(data)
	if !ok {
		return 0
	}
	return st.state
}

// An adopted process runs on as it was recorded, its output is read from
// the pipes it was adopted with (also what it wrote while nobody read),
// its exit is seen through a pidfd even while it is an unreaped zombie,
// is reported with an unknown status, and the restart policy then spawns
// a normal child.
func TestAdoptCapturesOutputAndReportsUnknownExit(t *testing.T) {
	clock := NewFakeClock(epoch)
	o, a := startOutside(t, `echo before; while read -r l; do echo "out $l"; echo "err $l" >&2; done`, true, false)
	a.StartedAt = epoch.Add(-time.Hour)
	a.LastStartReason, a.Restarts, a.MemoryRestarts = ReasonDeploy, 2, 1
	a.LastMemoryRestartAt = epoch.Add(-2 * time.Hour)
	spec := baseSpec(t, "exec "+fixture+" -sleep")
	spec.ID = "web#1"
	pipes := &pipesRecorder{}
	p, rec := adoptForTest(t, spec, Options{Clock: clock, OnPipes: pipes.add}, a)

	s := p.Status()
	if s.State != StateRunning || s.PID != o.pid || s.StartTime != a.StartTime || !s.StartedAt.Equal(a.StartedAt) ||
		s.UptimeMs == nil || *s.UptimeMs != time.Hour.Milliseconds() || s.LastStartReason != "deploy" ||
		s.Restarts != 2 || s.MemoryRestarts != 1 || s.LastMemoryRestartAt == nil || !s.LastMemoryRestartAt.Equal(a.LastMemoryRestartAt) || s.AdoptedAt == nil || !s.AdoptedAt.Equal(epoch) || s.OutputCaptured != nil || s.Exited {
		t.Fatalf("adopted status: %+v", s)
	}
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"adoptedAt", "children", "command", "cwd", "id", "lastMemoryRestartAt", "lastStartReason", "logs", "memoryRestarts", "pid", "restarts", "startedAt", "state", "uptimeMs"}
	if got := jsonKeys(t, raw); !reflect.DeepEqual(got, want) {
		t.Fatalf("status keys %v\nwant %v", got, want)
	}
	if !strings.HasPrefix(string(raw), `{"adoptedAt":"2026-11-25T20:00:00.000Z",`) {
		t.Fatalf("status JSON: %s", raw)
	}
	if raw, err = s.MarshalStateJSON(); err != nil {
		t.Fatal(err)
	}
	wantState := []string{"id", "lastMemoryRestartAt", "lastStartReason", "memoryRestarts", "pgid", "pid", "restarts", "startTime", "startedAt", "state", "uptimeMs"}
	if got := jsonKeys(t, raw); !reflect.DeepEqual(got, wantState) {
		t.Fatalf("state file keys %v\nwant %v", got, wantState)
	}

	if _, err := io.WriteString(o.stdin, "one\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lines written before and after the adoption", 5*time.Second, func() bool {
		logs := p.Status().Logs
		return hasLine(logs, "stdout", "before") && hasLine(logs, "stdout", "out one") && hasLine(logs, "stderr", "err one")
	})
	if got := pipes.get(); len(got) != 0 {
		t.Fatalf("OnPipes for an adopted process before its output ended: %+v", got)
	}

	// Killed by someone else and not reaped yet: a zombie.
	if err := syscall.Kill(o.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the exit", 5*time.Second, func() bool { return rec.count("process exited") == 1 })
	if st := procState(o.pid); st != 'Z' {
		t.Fatalf("pid %d is in state %q when its exit was seen; the test means to see it as a zombie", o.pid, st)
	}
	o.reap()
	if got := dataString(rec.find("process exited", 0)); got != "code=<nil> id=web#1 signal=<nil> status=unknown" {
		t.Fatalf("process exited data: %s", got)
	}
	waitFor(t, "the restart to be scheduled", 5*time.Second, func() bool {
		return reflect.DeepEqual(clock.Pending(), []time.Duration{time.Second}) && p.State() == StateFailed
	})
	s = p.Status()
	if !s.Exited || s.ExitCode != nil || s.ExitSignal != nil || s.PID != 0 {
		t.Fatalf("status after an unknown exit: %+v", s)
	}
	if raw, _ := json.Marshal(s); !strings.Contains(string(raw), `"exitCode":null,"exitSignal":null,`) {
		t.Fatalf("status JSON after an unknown exit: %s", raw)
	}
	waitFor(t, "the end of the capture", 5*time.Second, func() bool { return pipes.count(o.pid, true) == 1 })
	if got := pipes.get(); len(got) != 1 || !reflect.DeepEqual(got[0], OutputPipes{PID: o.pid, StartTime: a.StartTime, Closed: true}) {
		t.Fatalf("OnPipes calls for an adopted process: %+v", got)
	}
	cr := p.CrashReport()
	if len(cr.Causes) != 1 || cr.Causes[0].Code != nil || cr.Causes[0].Signal != nil || cr.Causes[0].Count != 1 {
		t.Fatalf("crash report %+v", cr)
	}

	clock.Advance(time.Second)
	waitFor(t, "the restart", 5*time.Second, func() bool {
		return rec.count("process started") == 1 && p.State() == StateRunning
	})
	s = p.Status()
	if s.PID == o.pid || s.PID == 0 || s.AdoptedAt != nil || s.OutputCaptured != nil || s.LastStartReason != "crash" || s.Restarts != 3 || s.Exited {
		t.Fatalf("status after the restart: %+v", s)
	}
	if raw, _ := json.Marshal(s); strings.Contains(string(raw), "adoptedAt") {
		t.Fatalf("a spawned child is not adopted: %s", raw)
	}
	if pipes.count(s.PID, false) != 1 {
		t.Fatalf("the new child's pipes were not shared: %+v", pipes.get())
	}
	p.Stop()
	// The new child is ours: its exit status is known again.
	if got := dataString(rec.find("process exited", 1)); got != "code=<nil> id=web#1 signal=SIGTERM" {
		t.Fatalf("second exit: %s", got)
	}
}

// When an adopted command dies by itself, what it left in its group is
// stopped before the restart, as after a spawned command's crash.
func TestAdoptedCrashStopsItsLeftovers(t *testing.T) {
	clock := NewFakeClock(epoch)
	pidFile := filepath.Join(t.TempDir(), "pids")
	o, a := startOutside(t, "exec "+fixture+" -grandchildren 1 -pid-file "+pidFile, false, true)
	waitForFile(t, pidFile)
	pids := readPids(t, pidFile)
	a.StartedAt = epoch
	spec := baseSpec(t, "exec "+fixture+" -sleep")
	p, rec := adoptForTest(t, spec, Options{Clock: clock}, a)
	if err := syscall.Kill(o.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restart to be scheduled", 5*time.Second, func() bool {
		return reflect.DeepEqual(clock.Pending(), []time.Duration{time.Second})
	})
	if alive(pids[1]) {
		t.Fatalf("grandchild %d outlived the adopted command that crashed", pids[1])
	}
	clock.Advance(time.Second)
	waitFor(t, "the restart", 5*time.Second, func() bool {
		return rec.count("process started") == 1 && p.State() == StateRunning
	})
	p.Stop()
}

// Stop runs the whole stop sequence on an adopted process: hooks with
// ROLLBRIDGE_PID, the stop signal, SIGKILL of the group after
// gracefulStop, and returns once the group is gone.
func TestAdoptedStopRunsTheStopSequence(t *testing.T) {
	dir := t.TempDir()
	signals, pidFile, hookLog := filepath.Join(dir, "signals"), filepath.Join(dir, "pids"), filepath.Join(dir, "hooks")
	o, a := startOutside(t, "exec "+fixture+" -ignore SIGTERM -on-signal SIGTERM -signal-file "+signals+" -exit-after 1h -grandchildren 1 -pid-file "+pidFile, false, true)
	waitForFile(t, pidFile)
	pids := readPids(t, pidFile)
	spec := baseSpec(t, "exec "+fixture+" -sleep")
	// Also the hooks' bound: a loaded machine can take more than 300 ms
	// to start a hook's shell.
	spec.GracefulStop = time.Second
	spec.Lifecycle = Lifecycle{
		QuietCommand: `echo "quiet $ROLLBRIDGE_PID" >> ` + hookLog,
		DrainCommand: `echo "drain $ROLLBRIDGE_PID" >> ` + hookLog,
		DrainTimeout: time.Second,
	}
	a.StartedAt = time.Now()
	p, rec := adoptForTest(t, spec, Options{}, a)

	start := time.Now()
	p.Stop()
	took := time.Since(start)
	if p.State() != StateStopped || p.PID() != 0 {
		t.Fatalf("after Stop: %+v", p.Status())
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Fatalf("pid %d of the adopted group survived Stop", pid)
		}
	}
	if got := fileLines(t, hookLog); !reflect.DeepEqual(got, []string{"quiet", itoa(o.pid) + "|drain", itoa(o.pid)}) {
		t.Fatalf("hooks ran as %v", got)
	}
	if got := fileLines(t, signals); !reflect.DeepEqual(got, []string{"SIGTERM"}) {
		t.Fatalf("signals received: %v", got)
	}
	if got := dataString(rec.find("process stop timed out; sending SIGKILL", 0)); got != "id=proc pid="+itoa(o.pid) {
		t.Fatalf("SIGKILL event: %q (events %v)", got, rec.messages())
	}
	if got := dataString(rec.find("process exited", 0)); got != "code=<nil> id=proc signal=<nil> status=unknown" {
		t.Fatalf("process exited data: %s", got)
	}
	if took < spec.GracefulStop {
		t.Fatalf("Stop took %v, less than gracefulStop %v", took, spec.GracefulStop)
	}
	if rec.count("process started") != 0 {
		t.Fatalf("a stopped process restarted: %v", rec.messages())
	}
	t.Logf("stop of an adopted process that ignores SIGTERM: %v", took)
}

// An adopted process above its memory limit is restarted gracefully like
// a spawned one: stopped, then spawned anew with reason "memory".
func TestAdoptedMemoryLimitRestart(t *testing.T) {
	clock := NewFakeClock(epoch)
	pidFile := filepath.Join(t.TempDir(), "pid")
	o, a := startOutside(t, "exec "+fixture+" -alloc-mb 64 -pid-file "+pidFile, false, true)
	waitForFile(t, pidFile)
	spec, _ := memorySpec(t, 1, MemoryPolicy{LimitBytes: 32 << 20, CheckInterval: 500 * time.Millisecond})
	a.StartedAt, a.MemoryRestarts, a.LastStartReason = epoch, 4, ReasonDeploy
	p, rec := adoptForTest(t, spec, Options{Clock: clock}, a)

	clock.Advance(500 * time.Millisecond)
	waitFor(t, "the memory restart", 10*time.Second, func() bool {
		return rec.count("process started") == 1 && p.State() == StateRunning
	})
	s := p.Status()
	if s.MemoryRestarts != 5 || s.LastMemoryRestartAt == nil || s.LastStartReason != "memory" || s.PID == o.pid || s.AdoptedAt != nil {
		t.Fatalf("status after a memory restart: %+v", s)
	}
	if exceeded := rec.find("memory limit exceeded", 0); len(exceeded) != 3 || exceeded[2].Value.(int64) <= 32<<20 {
		t.Fatalf("limit event %s", dataString(exceeded))
	}
	if got := dataString(rec.find("process exited", 0)); got != "code=<nil> id=hog signal=<nil> status=unknown" {
		t.Fatalf("process exited data: %s", got)
	}
	if groupAlive(o.pid) {
		t.Fatal("the adopted group is gone before the new child starts")
	}
	p.Stop()
}

// Adopt refuses what is not the recorded process, and closes the pipes
// it was given.
func TestAdoptRefuses(t *testing.T) {
	spec := baseSpec(t, "exec "+fixture+" -sleep")
	spec.ID = "web#1"
	refuse := func(a Adopted, want string) {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		a.Stdout = r
		p, err := Adopt(spec, Options{}, a)
		if err == nil {
			p.Stop()
			t.Fatalf("adopted %+v", a)
		}
		if !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "cannot adopt web#1: ") {
			t.Fatalf("error %q, want it to say %q", err, want)
		}
		if err := r.Close(); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("a refused adoption left its pipe open (close: %v)", err)
		}
	}

	live, a := startOutside(t, "exec "+fixture+" -sleep", false, true)
	recycled := a
	recycled.StartTime++
	refuse(recycled, "pid "+itoa(live.pid)+" started at tick "+itoa(int(a.StartTime))+", not at the recorded "+itoa(int(a.StartTime+1)))
	refuse(Adopted{}, "pid 0 is not a process id")

	// A process that does not lead its own group (an earlier daemon
	// spawns every command in a new session).
	member := exec.Command(fixture, "-sleep")
	if err := member.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = member.Process.Kill(); _ = member.Wait() })
	ticks, _ := StartTime(member.Process.Pid)
	refuse(Adopted{PID: member.Process.Pid, StartTime: ticks}, "not leading its own")

	zombie, za := startOutside(t, "exec "+fixture+" -sleep", false, false)
	if err := syscall.Kill(zombie.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a zombie", 5*time.Second, func() bool { return procState(zombie.pid) == 'Z' })
	refuse(za, "pid "+itoa(zombie.pid)+" is gone")
	zombie.reap()
	<-zombie.reaped
	refuse(za, "pid "+itoa(zombie.pid)+" is gone") // reaped: no such pid
}

// Without its pipes an adopted process says that its output is not
// captured; the next spawn captures it again.
func TestAdoptWithoutPipes(t *testing.T) {
	o, a := startOutside(t, "exec "+fixture+" -sleep", false, true)
	a.StartedAt = epoch
	pipes := &pipesRecorder{}
	p, _ := adoptForTest(t, baseSpec(t, "exec "+fixture+" -sleep"), Options{OnPipes: pipes.add}, a)
	s := p.Status()
	if s.OutputCaptured == nil || *s.OutputCaptured || s.PID != o.pid {
		t.Fatalf("status: %+v", s)
	}
	raw, _ := json.Marshal(s)
	want := []string{"adoptedAt", "children", "command", "cwd", "id", "logs", "memoryRestarts", "outputCaptured", "pid", "restarts", "startedAt", "state", "uptimeMs"}
	if got := jsonKeys(t, raw); !reflect.DeepEqual(got, want) {
		t.Fatalf("status keys %v\nwant %v", got, want)
	}
	if !strings.Contains(string(raw), `"memoryRestarts":0,"outputCaptured":false,"pid":`) {
		t.Fatalf("status JSON: %s", raw)
	}
	if raw, _ := s.MarshalStateJSON(); strings.Contains(string(raw), "outputCaptured") || strings.Contains(string(raw), "adoptedAt") {
		t.Fatalf("state file entry: %s", raw)
	}
	p.Stop()
	if got := pipes.get(); len(got) != 0 {
		t.Fatalf("OnPipes for an adopted process without pipes: %+v", got)
	}
	if err := p.Start(ReasonManual); err != nil {
		t.Fatal(err)
	}
	if s := p.Status(); s.OutputCaptured != nil || s.AdoptedAt != nil || s.PID == o.pid {
		t.Fatalf("status after a new spawn: %+v", s)
	}
	p.Stop()
}

// OnPipes gets working duplicates of the output pipes of every spawn
// before the child runs and before OnSpawn (bytes written into the
// child's stdout and stderr are read from them), and one Closed call
// once that spawn's capture ended; closing the duplicates does not
// disturb the capture.
func TestOnPipesSharesTheOutputPipes(t *testing.T) {
	var mu sync.Mutex
	var order []string
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	var readErr error
	pipes := &pipesRecorder{read: func(op OutputPipes) {
		note("pipes " + itoa(op.PID))
		for _, s := range []struct {
			fd  string
			dup *os.File
		}{{"1", op.Stdout}, {"2", op.Stderr}} {
			// The child is held at its gate: nothing reads the pipe yet.
			w, err := os.OpenFile("/proc/"+itoa(op.PID)+"/fd/"+s.fd, os.O_WRONLY, 0)
			if err != nil {
				readErr = err
				return
			}
			_, err = io.WriteString(w, "probe "+s.fd+"\n")
			w.Close()
			buf := make([]byte, 64)
			n, rerr := s.dup.Read(buf)
			if err != nil || rerr != nil || string(buf[:n]) != "probe "+s.fd+"\n" {
				readErr = errors.New("fd " + s.fd + ": read " + string(buf[:n]) + " from the duplicate")
			}
		}
	}}
	spec := baseSpec(t, "echo hi; echo ho >&2; exec "+fixture+" -sleep")
	rec := &recorder{}
	p := New(spec, Options{OnEvent: rec.add, OnPipes: pipes.add, OnSpawn: func(s Spawn) { note("spawn " + itoa(s.PID)) }})
	t.Cleanup(func() {
		if pid := p.PID(); pid > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	})

	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	waitFor(t, "the child's own output", 5*time.Second, func() bool {
		logs := p.Status().Logs
		return hasLine(logs, "stdout", "hi") && hasLine(logs, "stderr", "ho")
	})
	if readErr != nil {
		t.Fatal(readErr)
	}
	for _, l := range p.Status().Logs {
		if strings.HasPrefix(l.Line, "probe") {
			t.Fatalf("the probe was read from the duplicate, not captured: %+v", l)
		}
	}
	p.Stop()
	waitFor(t, "the Closed call", 5*time.Second, func() bool { return pipes.count(pid, true) == 1 })
	got := pipes.get()
	if len(got) != 2 || got[0].PID != pid || got[0].StartTime == 0 || got[0].Stdout == nil || got[0].Stderr == nil || got[0].Closed ||
		!reflect.DeepEqual(got[1], OutputPipes{PID: pid, StartTime: got[0].StartTime, Closed: true}) {
		t.Fatalf("OnPipes calls %+v", got)
	}
	if want := []string{"pipes " + itoa(pid), "spawn " + itoa(pid)}; !reflect.DeepEqual(order, want) {
		t.Fatalf("call order %v, want %v", order, want)
	}

	// A held spawn shares its pipes before it is released, and also a
	// dropped one reports their end.
	for _, run := range []bool{true, false} {
		started := rec.count("process started")
		release, err := p.StartHeld(ReasonDeploy, nil)
		if err != nil {
			t.Fatal(err)
		}
		held := p.PID()
		if pipes.count(held, false) != 1 || rec.count("process started") != started {
			t.Fatalf("held spawn (run %v): pipes %+v, events %v", run, pipes.get(), rec.messages())
		}
		release(run)
		p.Stop()
		waitFor(t, "the Closed call of the held spawn", 5*time.Second, func() bool { return pipes.count(held, true) == 1 })
	}
	if readErr != nil {
		t.Fatal(readErr)
	}
}
