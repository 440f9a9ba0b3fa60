package runtime

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// State is a managed process's state (docs/processes.md#3-process-states).
type State string

// The process states.
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateStopped  State = "stopped"
	StateFailed   State = "failed"
)

// Start reasons, shown as lastStartReason in status
// (docs/processes.md#9-what-status-shows).
const (
	ReasonDeploy = "deploy"
	ReasonCrash  = "crash"
	ReasonManual = "manual"
	ReasonMemory = "memory"
)

// Field is one key of an event's data, in emitted order.
type Field struct {
	Key   string
	Value any
}

// Event is something a process reports: a start, an exit, a hook outcome,
// a memory warning. The engine adds the release context and logs it.
type Event struct {
	Message string
	Data    []Field
}

// Lifecycle holds the hooks of the graceful stop sequence; a nil or empty
// command is not run.
type Lifecycle struct {
	QuietCommand string
	DrainCommand string
	StopCommand  string
	DrainTimeout time.Duration // 0 skips the drain step
}

// RestartPolicy governs automatic restarts after a crash
// (docs/processes.md#52-the-crash-restart-policy).
type RestartPolicy struct {
	Delay         time.Duration // restartDelayMs
	MaxRestarts   *int          // nil: unlimited
	Window        time.Duration // 0: the process's whole lifetime
	BackoffFactor float64       // >= 1
	MaxDelay      time.Duration // 0: no cap
}

// delay is Delay × BackoffFactor^n, capped at MaxDelay when set.
func (r RestartPolicy) delay(n int) time.Duration {
	d := float64(max(r.Delay, 0)) * math.Pow(max(r.BackoffFactor, 1), float64(n))
	if r.MaxDelay > 0 && d > float64(r.MaxDelay) {
		d = float64(r.MaxDelay)
	}
	if d > float64(math.MaxInt64) {
		d = float64(math.MaxInt64)
	}
	return time.Duration(d)
}

// MemoryPolicy restarts a process whose group outgrows LimitBytes.
type MemoryPolicy struct {
	LimitBytes    float64
	WarnBytes     float64 // 0: no warning
	CheckInterval time.Duration
}

// Spec is the definition of a managed process. It can be replaced while
// the process runs (UpdateSpec); a running child keeps going.
type Spec struct {
	ID      string // instance id, e.g. "worker#1"
	Command string // run with /bin/sh -c
	// ShownCommand is the command as status and events show it, with
	// secrets left as placeholders; "" shows Command.
	ShownCommand string
	Dir          string // working directory
	Cwd          string // the working directory as status shows it
	Env          []string
	StopSignal   syscall.Signal
	GracefulStop time.Duration
	Indefinite   bool // never SIGKILL
	Lifecycle    Lifecycle
	Restart      RestartPolicy
	Memory       *MemoryPolicy
	OutputLines  int
	// CanRestart is the auto-restart gate, asked when the process crashes
	// and again when its restart timer fires; nil means always open.
	CanRestart func() bool
}

// shownCommand is the command as status and events show it.
func (s Spec) shownCommand() string {
	if s.ShownCommand != "" {
		return s.ShownCommand
	}
	return s.Command
}

// Options connect a process to its owner.
type Options struct {
	Clock    Clock             // SystemClock when nil
	OnEvent  func(Event)       // may be nil
	OnOutput func(OutputEntry) // each captured line; may be nil
	// OnSpawn is called synchronously after every successful spawn of the
	// command (its pid and start time are already in Status) and of every
	// lifecycle hook (already in Hooks), before the child runs anything:
	// children are held behind a gate until it returns, and exit by
	// themselves if this process dies first. May be nil.
	OnSpawn func(Spawn)
	// OnPipes is called at every spawn of the command, before the child
	// runs and before OnSpawn, with duplicates of the read ends of its
	// output pipes (the callee owns and closes them; the daemon keeps them
	// in systemd's fd store so that a restarted daemon can read on), and
	// once more with Closed set and no files when the capture of that
	// spawn's output has ended. An adopted process gets only the Closed
	// call, for the pipes it was adopted with. May be nil.
	OnPipes func(OutputPipes)
}

// OutputPipes are the output pipes of one spawn of the command, which
// its pid and start time name.
type OutputPipes struct {
	PID       int
	StartTime uint64 // clock ticks after boot, 0 when unknown
	Stdout    *os.File
	Stderr    *os.File
	Closed    bool // the capture ended; Stdout and Stderr are nil
}

// Process is one managed OS process and its supervision. All methods are
// safe for concurrent use.
type Process struct {
	clock    Clock
	onEvent  func(Event)
	onOutput func(OutputEntry)
	onSpawn  func(Spawn)
	onPipes  func(OutputPipes)
	output   outputRing

	mu              sync.Mutex
	spec            Spec
	state           State
	pid             int // the running child, 0 when none
	lastPid         int
	generation      int // counts spawns; timers of an older spawn do nothing
	exitCh          chan struct{}
	startedAt       time.Time
	startTicks      uint64 // the child's start time in /proc, 0 unknown
	lastStartReason string
	exited          bool // exitCode/exitSignal are reported
	exitCode        *int
	exitSignal      *string
	restarts        int
	memoryRestarts  int
	lastMemRestart  time.Time
	rssBytes        *int64
	children        []Child
	restartTimer    Timer
	restartHistory  []time.Time
	memTimer        Timer
	memScanner      *groupScanner // of the current spawn's group
	memWarned       bool
	memRestarting   bool
	stopRun         *stopRun      // the stop of the current spawn, shared by callers
	stopRequested   bool          // someone outside wants it down until the next Start
	spawnMu         sync.Mutex    // held across a spawn; a stop waits for it
	leftovers       chan struct{} // closed when the last crash's leftovers are gone
	hooks           []Hook        // lifecycle hooks running now
	dropped         bool          // the held child was let go without running
	crashes         CrashReport   // since the last deploy or manual start
	crashCh         chan struct{} // closed at the next crash (Crashed)
	settling        int           // exits counted whose output may still arrive
	adoptedAt       time.Time     // when the running command was adopted; zero when spawned
	outputLost      bool          // the adopted command's output pipes were lost
	outputWait      time.Duration // crashOutputWait; a test lengthens it before Start
}

type stopRun struct {
	quiesced    chan struct{} // closed once restarts are off and the quiet hook ran
	quiesceOnce sync.Once
	done        chan struct{}
}

func (r *stopRun) markQuiesced() { r.quiesceOnce.Do(func() { close(r.quiesced) }) }

// New returns a process in state stopped; nothing runs until Start.
func New(spec Spec, opts Options) *Process {
	p := &Process{clock: opts.Clock, onEvent: opts.OnEvent, onOutput: opts.OnOutput, onSpawn: opts.OnSpawn, onPipes: opts.OnPipes, spec: spec, state: StateStopped, outputWait: crashOutputWait}
	if p.clock == nil {
		p.clock = SystemClock
	}
	p.output.setLimit(spec.OutputLines)
	return p
}

func (p *Process) emit(message string, data ...Field) {
	if p.onEvent != nil {
		p.onEvent(Event{Message: message, Data: data})
	}
}

// ID returns the instance id.
func (p *Process) ID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec.ID
}

// Spec returns the current definition.
func (p *Process) Spec() Spec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec
}

// State returns the current state.
func (p *Process) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// PID returns the running child's pid (also its process group), or 0.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// UpdateSpec replaces the definition without touching a running child; status
// shows the new one at once (docs/processes.md#9-what-status-shows). A memory
// policy added here is checked from the next spawn on; one removed is dropped
// at the next check.
func (p *Process) UpdateSpec(spec Spec) {
	p.mu.Lock()
	p.spec = spec
	p.mu.Unlock()
	p.output.setLimit(spec.OutputLines)
}

// Start spawns the command unless a child is already running. A manual or
// deploy start forgets earlier crash restarts, so a revived process gets
// its full restart allowance again.
func (p *Process) Start(reason string) error {
	return p.start(reason, nil)
}

// StartUnless is Start, except that nothing is spawned when abort reports
// true. abort is asked at the moment of spawning, under the lock a Stop
// takes first, so a Stop that began earlier is never undone.
func (p *Process) StartUnless(reason string, abort func() bool) error {
	return p.start(reason, abort)
}

// StartHeld is StartUnless for one of several processes that are
// recorded together: the child is spawned and its pid and start time are
// in Status, but it is held behind its gate and OnSpawn is not called.
// The caller records the batch, then calls release(true), which lets the
// child run and reports "process started"; release(false) drops it
// instead (a later step of the deploy failed, or the batch could not be
// recorded): the child exits without running its command, and the
// process is stopped when release returns. Until then a Stop of this
// process waits. release is nil when nothing was spawned; otherwise it
// must be called exactly once.
func (p *Process) StartHeld(reason string, abort func() bool) (release func(run bool), err error) {
	return p.spawnHeld(reason, abort, true)
}

// start spawns the command. abort, when given, is asked under the lock
// right before the spawn: an automatic restart gives up there when a stop
// was asked for since it was scheduled, so a stop can never be undone by a
// restart that was already on its way.
func (p *Process) start(reason string, abort func() bool) error {
	release, err := p.spawnHeld(reason, abort, false)
	if release != nil {
		release(true)
	}
	return err
}

// spawnHeld spawns the command behind its gate and records it. Unless the
// caller records it itself (batch), OnSpawn is called first. The returned
// release opens the gate; the spawn lock is held until then.
func (p *Process) spawnHeld(reason string, abort func() bool, batch bool) (release func(run bool), err error) {
	p.spawnMu.Lock()
	held := false
	defer func() {
		if !held {
			p.spawnMu.Unlock()
		}
	}()
	p.mu.Lock()
	if p.pid != 0 || (abort != nil && abort()) {
		p.mu.Unlock()
		return nil, nil
	}
	p.state = StateStarting
	p.exited, p.exitCode, p.exitSignal = false, nil, nil
	p.stopRun, p.stopRequested = nil, false
	p.stopTimersLocked()
	if reason == ReasonManual || reason == ReasonDeploy {
		p.restartHistory = nil
		p.crashes = CrashReport{}
	}
	spec := p.spec
	p.mu.Unlock()

	cmd, stdout, stderr, g, err := spawn(spec)
	var ticks uint64
	if err == nil {
		ticks, _ = StartTime(cmd.Process.Pid)
	}
	p.mu.Lock()
	if err != nil {
		p.state = StateFailed
		p.mu.Unlock()
		return nil, err
	}
	p.pid = cmd.Process.Pid
	p.lastPid = p.pid
	p.generation++
	gen := p.generation
	p.startedAt = p.clock.Now()
	p.startTicks = ticks
	p.lastStartReason = reason
	p.state = StateRunning
	p.memWarned = false
	p.children, p.rssBytes = nil, nil
	p.adoptedAt, p.outputLost = time.Time{}, false
	exitCh := make(chan struct{})
	p.exitCh = exitCh
	if spec.Memory != nil {
		p.memTimer = p.clock.AfterFunc(spec.Memory.CheckInterval, func() { p.checkMemory(gen) })
	}
	p.mu.Unlock()

	pipes := OutputPipes{PID: cmd.Process.Pid, StartTime: ticks}
	shared := p.sharePipes(pipes, stdout, stderr)
	if !batch {
		p.spawned(Spawn{ID: spec.ID, PID: cmd.Process.Pid, StartTime: ticks})
	}
	held = true
	return func(run bool) {
		defer p.spawnMu.Unlock()
		if run {
			g.open()
			p.emit("process started", Field{"command", spec.shownCommand()}, Field{"id", spec.ID}, Field{"pid", cmd.Process.Pid}, Field{"reason", reason})
		} else {
			p.mu.Lock()
			p.dropped = true
			p.mu.Unlock()
			g.drop()
		}
		outputDone := p.capture(stdout, stderr, pipes, shared)
		go p.wait(cmd, gen, exitCh, outputDone)
		if !run {
			// The child exits as soon as it reads the closed gate.
			select {
			case <-exitCh:
			case <-time.After(killWait):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exitCh
			}
		}
	}, nil
}

// sharePipes hands duplicates of a new spawn's output pipes to OnPipes.
// It reports whether it did; when a duplicate cannot be made (no
// descriptors left) the spawn runs all the same, its pipes just not
// shared.
func (p *Process) sharePipes(pipes OutputPipes, stdout, stderr *os.File) bool {
	if p.onPipes == nil {
		return false
	}
	out, err := dupFile(stdout)
	if err != nil {
		return false
	}
	errf, err := dupFile(stderr)
	if err != nil {
		out.Close()
		return false
	}
	pipes.Stdout, pipes.Stderr = out, errf
	p.onPipes(pipes)
	return true
}

// dupFile duplicates f's descriptor (close-on-exec).
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var dupErr error
	if err := rc.Control(func(fd uintptr) { nfd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, dupErr
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

// capture reads the command's stdout and stderr (either may be nil) into
// the output ring, closing each at its end. The returned channel is
// closed once both ended; OnPipes then hears that they are closed, when
// shared.
func (p *Process) capture(stdout, stderr *os.File, pipes OutputPipes, shared bool) <-chan struct{} {
	var captured sync.WaitGroup
	for _, s := range []struct {
		f    *os.File
		name string
	}{{stdout, "stdout"}, {stderr, "stderr"}} {
		if s.f == nil {
			continue
		}
		captured.Add(1)
		go func() {
			defer captured.Done()
			defer s.f.Close()
			captureLines(s.f, s.name, time.Now, p.addOutput)
		}()
	}
	outputDone := make(chan struct{})
	go func() {
		captured.Wait()
		if shared && p.onPipes != nil {
			p.onPipes(OutputPipes{PID: pipes.PID, StartTime: pipes.StartTime, Closed: true})
		}
		close(outputDone)
	}()
	return outputDone
}

func (p *Process) addOutput(e OutputEntry) {
	e = p.output.add(e)
	if p.onOutput != nil {
		p.onOutput(e)
	}
}

// spawn starts the command behind a gate (spawn_gate.go) in a new session
// (so its pid is its process group) with stdin on /dev/null and
// stdout/stderr on pipes. The pipes are plain files, so waiting for the
// shell never waits for grandchildren that inherited them. The caller
// opens the gate once the child is recorded.
func spawn(spec Spec) (cmd *exec.Cmd, stdout, stderr *os.File, g *gate, err error) {
	if fi, err := os.Stat(spec.Dir); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cannot start %s: working directory %s does not exist", spec.ID, spec.Dir)
	} else if !fi.IsDir() {
		return nil, nil, nil, nil, fmt.Errorf("cannot start %s: working directory %s is not a directory", spec.ID, spec.Dir)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("cannot start %s: %w", spec.ID, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, nil, fmt.Errorf("cannot start %s: %w", spec.ID, err)
	}
	cmd, gateR, g, err := gatedCommand(spec.Command)
	if err != nil {
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return nil, nil, nil, nil, fmt.Errorf("cannot start %s: %w", spec.ID, err)
	}
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	gateR.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		g.drop()
		return nil, nil, nil, nil, fmt.Errorf("cannot start %s: %w", spec.ID, err)
	}
	return cmd, outR, errR, g, nil
}

// ExitStatus is how a child ended, from the error of its cmd.Wait: its
// exit code, or the name of the signal that killed it ("SIGKILL"). Both
// are nil when err is no exit (the wait itself failed).
func ExitStatus(err error) (code *int, signal *string) {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		zero := 0
		return &zero, nil
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			name := unix.SignalName(ws.Signal())
			return nil, &name
		}
		c := exitErr.ExitCode()
		return &c, nil
	}
	return nil, nil
}

// wait observes the exit of a spawned child, which is ours to reap, so
// its exit status is known. The child is reaped with p.mu held and its
// exit recorded before p.mu is released: once its pid is gone (kill -0
// fails, as a --before-switch command that killed the web process sees),
// PID and Status no longer report it. Reaped first and recorded after, a
// caller could see the pid gone and still be told the process runs.
func (p *Process) wait(cmd *exec.Cmd, gen int, exitCh chan struct{}, outputDone <-chan struct{}) {
	var code *int
	var signal *string
	if awaitWaitable(cmd.Process.Pid) {
		p.mu.Lock()
		code, signal = ExitStatus(cmd.Wait()) // a zombie by now: returns at once
	} else {
		// waitid could not wait (ENOSYS under some emulations): reaping
		// under p.mu could block it for the child's whole life.
		code, signal = ExitStatus(cmd.Wait())
		p.mu.Lock()
	}
	if hook := afterReap.Load(); hook != nil {
		(*hook)()
	}
	p.endedLocked(exitInfo{gen: gen, pgid: cmd.Process.Pid, exitCh: exitCh, outputDone: outputDone, code: code, signal: signal})
}

// afterReap, when set (by tests only), runs between the reap of a spawned
// child and the record of its exit. Atomic: the wait goroutines of
// processes from earlier tests may still read it.
var afterReap atomic.Pointer[func()]

// awaitWaitable blocks until child pid has exited, without reaping it
// (waitid with WNOWAIT), and reports whether it has; false after any
// error but EINTR, which is retried.
func awaitWaitable(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return err == nil
		}
	}
}

// exitInfo is one exit of the leader of spawn gen, however it was seen.
type exitInfo struct {
	gen        int
	pgid       int
	exitCh     chan struct{} // closed once the exit is recorded
	outputDone <-chan struct{}
	code       *int
	signal     *string
	unknown    bool // not our child: the exit status could not be read
}

// ended records an exit of the command, spawned or adopted, and applies
// the restart policy when the exit was not asked for.
func (p *Process) ended(e exitInfo) {
	p.mu.Lock()
	p.endedLocked(e)
}

// endedLocked is ended with p.mu held by the caller; it releases p.mu.
func (p *Process) endedLocked(e exitInfo) {
	p.pid = 0
	p.rssBytes, p.children = nil, nil
	if p.memTimer != nil {
		p.memTimer.Stop()
		p.memTimer = nil
	}
	if p.dropped {
		// Never ran: no exit to report, nothing to restart.
		p.dropped = false
		p.state = StateStopped
		p.mu.Unlock()
		close(e.exitCh)
		return
	}
	p.exited, p.exitCode, p.exitSignal = true, e.code, e.signal
	intentional := p.stopRun != nil
	var leftovers chan struct{}
	if !intentional {
		p.state = StateFailed
		p.recordCrashLocked(e.code, e.signal)
		// Processes the command left in its group belong to a dead instance:
		// stop them now, while the group is known to be ours, so nothing
		// leaks and a restart never runs beside an old copy.
		leftovers = make(chan struct{})
		p.leftovers = leftovers
	} // an intentional stop sets "stopped" once the whole group is gone
	spec := p.spec
	p.mu.Unlock()
	data := []Field{{"code", nullableInt(e.code)}, {"id", spec.ID}, {"signal", nullableString(e.signal)}}
	if e.unknown {
		data = append(data, Field{"status", "unknown"})
	}
	// Reported before exitCh closes: a stop waiting on it finishes only
	// after this event, so what follows the stop (a "release stopped",
	// the answer to "rollbridge stop") comes after it too.
	p.emit("process exited", data...)
	close(e.exitCh)
	if !intentional {
		if groupAlive(e.pgid) {
			terminateGroup(spec, e.pgid, p.emit)
		}
		close(leftovers)
		p.scheduleRestart(e.gen)
		p.announceCrash(e.outputDone, true)
	}
}

func nullableInt(v *int) any {
	if v == nil {
		return nil
	}
	return *v
}

func nullableString(v *string) any {
	if v == nil {
		return nil
	}
	return *v
}

// scheduleRestart applies the restart policy after a crash of spawn gen.
func (p *Process) scheduleRestart(gen int) {
	p.mu.Lock()
	if p.stopRun != nil || p.generation != gen {
		p.mu.Unlock()
		return
	}
	if !p.gateOpenLocked() {
		p.crashes.GaveUp = true
		p.mu.Unlock()
		return
	}
	r := p.spec.Restart
	id := p.spec.ID
	var delay time.Duration
	if r.MaxRestarts == nil && r.BackoffFactor <= 1 {
		delay = r.delay(0)
	} else {
		now := p.clock.Now()
		if r.Window > 0 {
			kept := p.restartHistory[:0]
			for _, t := range p.restartHistory {
				if t.After(now.Add(-r.Window)) {
					kept = append(kept, t)
				}
			}
			p.restartHistory = kept
		}
		if r.MaxRestarts != nil && len(p.restartHistory) >= *r.MaxRestarts {
			p.crashes.GaveUp = true
			p.mu.Unlock()
			p.emit("restart limit reached", Field{"id", id}, Field{"maxRestarts", *r.MaxRestarts}, Field{"windowMs", millis(r.Window)})
			return
		}
		delay = r.delay(len(p.restartHistory))
		p.restartHistory = append(p.restartHistory, now)
	}
	p.restartTimer = p.clock.AfterFunc(delay, func() { p.restartAfterCrash(gen) })
	p.mu.Unlock()
}

// restartAfterCrash runs when a restart delay elapses. The gate is asked
// again: the release may have started draining meanwhile.
func (p *Process) restartAfterCrash(gen int) {
	p.mu.Lock()
	if p.stopRun != nil || p.generation != gen || p.pid != 0 || p.state == StateStarting || !p.gateOpenLocked() {
		p.mu.Unlock()
		return
	}
	p.restartTimer = nil
	p.restarts++
	p.crashes.Restarts++
	id := p.spec.ID
	p.mu.Unlock()
	aborted := func() bool { return p.stopRun != nil || p.generation != gen }
	if err := p.start(ReasonCrash, aborted); err != nil {
		p.emit("process restart failed", Field{"error", err.Error()}, Field{"id", id})
		// A failed respawn is another crash: the policy goes on.
		p.scheduleRestart(gen)
		p.announceCrash(nil, false)
	}
}

func (p *Process) gateOpenLocked() bool {
	return p.spec.CanRestart == nil || p.spec.CanRestart()
}

func (p *Process) stopTimersLocked() {
	if p.restartTimer != nil {
		p.restartTimer.Stop()
		p.restartTimer = nil
	}
	if p.memTimer != nil {
		p.memTimer.Stop()
		p.memTimer = nil
	}
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func itoa(n int) string { return strconv.Itoa(n) }
