package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// Bounds of deploy --hold-traffic (docs/cli.md#deploy).
const (
	// MaxBeforeSwitchBytes bounds the --before-switch command's text.
	MaxBeforeSwitchBytes = 64 << 10
	// beforeSwitchOutputBytes is how much of the command's output is
	// kept: its tail, enough for the lines an error needs.
	beforeSwitchOutputBytes = 64 << 10
	// BeforeSwitchOutputLines is how many of its last lines a failure
	// reports.
	BeforeSwitchOutputLines = 40
	// beforeSwitchReadGrace bounds the read of the command's output once
	// its group is gone: a child that left the group (setsid) and kept
	// the pipe open must not hold the deploy.
	beforeSwitchReadGrace = time.Second
)

// beforeSwitchKillAfter is how long the command's process group has
// between SIGTERM and SIGKILL once --max-pause ran out (a variable for
// tests).
var beforeSwitchKillAfter = 5 * time.Second

// CheckBeforeSwitch refuses a --before-switch command the daemon would not
// run: empty, too long, or not UTF-8. The CLI checks the same before it
// sends anything.
func CheckBeforeSwitch(command string) error {
	switch {
	case strings.TrimSpace(command) == "":
		return errors.New("beforeSwitch must be a non-empty shell command")
	case len(command) > MaxBeforeSwitchBytes:
		return fmt.Errorf("beforeSwitch is %d bytes; the limit is %d bytes (put a longer script in a file in the release and run that)", len(command), MaxBeforeSwitchBytes)
	case !utf8.ValidString(command):
		return errors.New("beforeSwitch is not valid UTF-8")
	case strings.ContainsRune(command, 0):
		return errors.New("beforeSwitch contains a NUL byte")
	}
	return nil
}

// beforeSwitchRun is how a --before-switch command ended.
type beforeSwitchRun struct {
	ExitCode *int   // set when it exited
	Signal   string // set when a signal ended it ("SIGKILL")
	TimedOut bool   // --max-pause ran out and it was stopped
	Aborted  bool   // the daemon shut down or retired meanwhile
	Duration time.Duration
	Output   []string // its last lines, oldest first
	StartErr error    // it could not be started
	// Unrecorded is set when it could not be recorded in the state file:
	// it was not run.
	Unrecorded error
}

// ok reports whether the command succeeded.
func (b *beforeSwitchRun) ok() bool {
	return b.StartErr == nil && b.Unrecorded == nil && !b.TimedOut && !b.Aborted && b.Signal == "" && b.ExitCode != nil && *b.ExitCode == 0
}

// status is how it ended in words: "exit status 3", "killed by signal
// SIGKILL", "could not start: …".
func (b *beforeSwitchRun) status() string {
	switch {
	case b.StartErr != nil:
		return "could not start: " + b.StartErr.Error()
	case b.Signal != "":
		return "killed by signal " + b.Signal
	case b.ExitCode != nil:
		return fmt.Sprintf("exit status %d", *b.ExitCode)
	}
	return "unknown end"
}

// endFields are how long it ran and how it ended (signal or exitCode),
// as the failure reply and the before-switch events carry them.
func (b *beforeSwitchRun) endFields() jsconfig.Object {
	o := jsconfig.Object{{Key: "durationMs", Value: b.Duration.Milliseconds()}}
	switch {
	case b.Signal != "":
		o = append(o, jsconfig.Field{Key: "signal", Value: b.Signal})
	case b.ExitCode != nil:
		o = append(o, jsconfig.Field{Key: "exitCode", Value: *b.ExitCode})
	}
	return o
}

// MarshalJSON is the failure reply's "beforeSwitch" field.
func (b *beforeSwitchRun) MarshalJSON() ([]byte, error) {
	out := b.Output
	if out == nil {
		out = []string{}
	}
	return append(b.endFields(), jsconfig.Field{Key: "output", Value: out}, jsconfig.Field{Key: "timedOut", Value: b.TimedOut}).MarshalJSON()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped bool // bytes before buf were dropped
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		p = p[len(p)-t.max:]
		t.buf = t.buf[:0]
		t.dropped = true
	} else if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.dropped = true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// lines are the last n lines kept, each cut to failureLineBytes; a first
// line that was cut by the byte bound is left out.
func (t *tailBuffer) lines(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	text := string(bytes.TrimRight(t.buf, "\n"))
	if text == "" {
		return nil
	}
	all := strings.Split(text, "\n")
	if t.dropped && len(all) > 1 {
		all = all[1:]
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	out := make([]string, len(all))
	for i, l := range all {
		out[i] = cutLine(strings.TrimSuffix(l, "\r"), failureLineBytes)
	}
	return out
}

// runBeforeSwitch runs command with /bin/sh -c in dir with env, in its own
// process group, stdin from /dev/null, stdout and stderr captured
// (runtime.RunCommand). The shell is spawned behind a gate and record is
// called with its pid (also the group id) and start time before the
// command may run: when record fails, the command never runs and the run
// reports it in Unrecorded. When deadline passes or ctx ends, the group
// gets SIGTERM, then SIGKILL after beforeSwitchKillAfter. Whatever the
// command leaves in its group when it ends is killed: nothing it started
// outlives the step that waited for it.
//
// atDeadline, when not nil, is called the moment deadline passes, before
// the group is signalled: the deploy lifts its hold then, so the hold
// never outlasts --max-pause while the command is being stopped.
func runBeforeSwitch(ctx context.Context, command, dir string, env []string, deadline time.Time, record func(pid int, startTime uint64) error, atDeadline func()) *beforeSwitchRun {
	tail := &tailBuffer{max: beforeSwitchOutputBytes}
	r := runtime.RunCommand(ctx, runtime.Command{
		Command: command, Dir: dir, Env: env, Output: tail, Record: record,
		Deadline: deadline, AtDeadline: atDeadline, KillAfter: beforeSwitchKillAfter, ReadGrace: beforeSwitchReadGrace,
	})
	res := &beforeSwitchRun{ExitCode: r.ExitCode, TimedOut: r.TimedOut, Aborted: r.Aborted, Duration: r.Duration, StartErr: r.StartErr, Unrecorded: r.Unrecorded}
	if r.Signal != nil {
		res.Signal = *r.Signal
	}
	res.Output = tail.lines(BeforeSwitchOutputLines) // nil when it never ran
	return res
}

// HoldError is a deploy --hold-traffic called off between its hold and
// its switch. Its reply carries "beforeSwitch" when the command ran.
type HoldError struct {
	msg string
	Run *beforeSwitchRun // nil when the command did not run
}

func (h *HoldError) Error() string { return h.msg }

// ReplyFields are the fields the error reply carries besides "error".
func (h *HoldError) ReplyFields() jsconfig.Object {
	if h.Run == nil {
		return nil
	}
	return jsconfig.Object{{Key: "beforeSwitch", Value: h.Run}}
}

// beforeSwitchCommand is the --before-switch command rendered for release
// r with the proxied process's template context, with where and in which
// environment it runs: the release directory and the proxied process's
// environment. shown keeps values from the daemon's environment as
// {{env.NAME}} for the event log.
type beforeSwitchCommand struct {
	command, shown, dir string
	env                 []string
}

func (e *Engine) renderBeforeSwitch(plan *jsconfig.Plan, r *Release, command string) (*beforeSwitchCommand, error) {
	web := plan.ProxiedProcess()
	c := e.templateContext(plan, r, web, 0)
	rendered, err := RenderProcess(web, c, processEnviron())
	if err != nil {
		return nil, err
	}
	b := &beforeSwitchCommand{dir: r.Path, env: rendered.Env}
	if b.command, err = c.Render(command); err != nil {
		return nil, fmt.Errorf("The --before-switch command cannot be rendered: %w; nothing was held and the release was stopped.", err)
	}
	if b.shown, err = c.RenderShown(command); err != nil {
		return nil, err
	}
	return b, nil
}

// holdBeforeSwitch is the step of deploy --hold-traffic between the
// health check and the switch (docs/cli.md#deploy): hold new requests,
// wait for those in flight, run the --before-switch command, all within
// req.MaxPause. On success the caller switches and then calls lift (held
// requests go to the new release). On failure the hold is already lifted
// with the previous release still active, so held requests go to it.
func (e *Engine) holdBeforeSwitch(plan *jsconfig.Plan, r *Release, req DeployRequest) (lift func(), err error) {
	var cmd *beforeSwitchCommand
	if req.BeforeSwitch != "" {
		// Rendered before the hold: a template error holds nothing.
		if cmd, err = e.renderBeforeSwitch(plan, r, req.BeforeSwitch); err != nil {
			return nil, err
		}
	}
	max := req.MaxPause
	deadline := time.Now().Add(max)
	hold, err := e.holdForDeploy(r.ID, max)
	if err != nil {
		return nil, err
	}
	lift = onceLift(hold)
	// A panic below must not leave traffic held.
	defer func() {
		if p := recover(); p != nil {
			lift()
			panic(p)
		}
	}()
	abort := func(reason string, err error) (func(), error) {
		lift()
		e.events.log("hold aborted", jsconfig.Field{Key: "reason", Value: reason}, jsconfig.Field{Key: "releaseId", Value: r.ID})
		return nil, err
	}

	waitBegan := time.Now()
	ctx, cancel := context.WithDeadline(e.ctx, deadline)
	open, werr := e.proxy.WaitInFlight(ctx)
	cancel()
	if e.stopping.Load() {
		return abort("the daemon is shutting down", ErrShuttingDown)
	}
	e.events.log("traffic drained", jsconfig.Field{Key: "inFlight", Value: open}, jsconfig.Field{Key: "waitedMs", Value: time.Since(waitBegan).Milliseconds()}, jsconfig.Field{Key: "releaseId", Value: r.ID})
	if werr != nil {
		msg := fmt.Sprintf("%s still in flight when --max-pause (%s) ran out, so the switch could not happen without overlap; the deploy was called off before the switch%s: %s",
			requestsWere(open), max, ranOrNot(cmd), e.calledOff(r))
		return abort("requests still in flight", &HoldError{msg: msg})
	}
	var run *beforeSwitchRun
	if cmd != nil {
		// At --max-pause the hold ends at once, the previous release still
		// active: held requests go to it while the command is stopped.
		run = runBeforeSwitch(e.ctx, cmd.command, cmd.dir, cmd.env, deadline, e.recordBeforeSwitch(r, cmd), lift)
		e.forgetBeforeSwitch(r)
		if errors.Is(run.Unrecorded, ErrShuttingDown) {
			return abort("the daemon is shutting down", ErrShuttingDown)
		}
		if run.Unrecorded != nil {
			msg := fmt.Sprintf("%s The --before-switch command did not run and the deploy was called off: %s Make sure the directory of the state file exists and the daemon can write it (rollbridge doctor checks it), then deploy again.", run.Unrecorded.Error(), e.calledOff(r))
			return abort("the before-switch command could not be recorded", &HoldError{msg: msg})
		}
		if run.ok() {
			e.events.log("before-switch command finished", append(run.endFields(), jsconfig.Field{Key: "releaseId", Value: r.ID})...)
		} else {
			var what string
			switch {
			case run.Aborted:
				what = "it was stopped because the daemon is shutting down"
			case run.TimedOut:
				what = fmt.Sprintf("it did not finish within --max-pause (%s) and was stopped (%s)", max, run.status())
			case run.Signal != "":
				what = fmt.Sprintf("it was killed by signal %s after %s", run.Signal, run.Duration.Round(time.Millisecond))
			case run.StartErr != nil:
				what = "it " + run.status()
			default:
				what = fmt.Sprintf("it ended with %s after %s", run.status(), run.Duration.Round(time.Millisecond))
			}
			e.events.log("before-switch command failed", append(run.endFields(), jsconfig.Field{Key: "error", Value: what}, jsconfig.Field{Key: "releaseId", Value: r.ID}, jsconfig.Field{Key: "timedOut", Value: run.TimedOut})...)
			if run.Aborted {
				return abort("the daemon is shutting down", ErrShuttingDown)
			}
			msg := fmt.Sprintf("The --before-switch command failed: %s. The deploy was called off: %s", what, e.calledOff(r))
			return abort("before-switch command failed", &HoldError{msg: msg, Run: run})
		}
	}
	if e.stopping.Load() {
		return abort("the daemon is shutting down", ErrShuttingDown)
	}
	// The health check passed before the hold; a web process that died
	// since (the command changed something it needs) must not get the
	// held requests.
	if in := e.webInstance(r, plan.ProxiedProcess()); in != nil && in.proc.PID() == 0 {
		msg := fmt.Sprintf("%s of release %s exited while traffic was held (\"rollbridge logs --process %s\" shows why), so the deploy was called off before the switch: %s", in.id, r.ID, in.id, e.calledOff(r))
		return abort("the web process exited", &HoldError{msg: msg, Run: run})
	}
	return lift, nil
}

// recordBeforeSwitch is runBeforeSwitch's record for a deploy of r: the
// command's pid, process group and start time are written to the state
// file, as an entry of r, before it may run. A daemon killed while it
// runs thus leaves it on record: the next daemon reports it among the
// orphans and recover --force stops its group.
func (e *Engine) recordBeforeSwitch(r *Release, cmd *beforeSwitchCommand) func(pid int, startTime uint64) error {
	return func(pid int, startTime uint64) error {
		e.mu.Lock()
		if e.stopping.Load() {
			// A shutdown or retirement began since the hold: its last
			// state file write may be done, so the command must not run.
			e.mu.Unlock()
			return ErrShuttingDown
		}
		r.beforeSwitch = &runtime.Hook{Label: beforeSwitchLabel, PID: pid, StartTime: startTime}
		e.mu.Unlock()
		if err := e.persist.sync(); err != nil {
			return &unrecordedError{what: "the --before-switch command of release " + r.ID, path: e.persist.main, err: err}
		}
		e.events.log("before-switch command started", jsconfig.Field{Key: "command", Value: cmd.shown}, jsconfig.Field{Key: "releaseId", Value: r.ID})
		return nil
	}
}

// forgetBeforeSwitch takes the --before-switch command of r off the
// record once its group is gone.
func (e *Engine) forgetBeforeSwitch(r *Release) {
	e.mu.Lock()
	r.beforeSwitch = nil
	e.mu.Unlock()
	e.persist.request()
}

// onceLift makes a deploy hold's lift safe to call from every path.
func onceLift(lift func() int) func() {
	return sync.OnceFunc(func() { lift() })
}

// ranOrNot completes "called off before the switch": whether the
// --before-switch command ran.
func ranOrNot(cmd *beforeSwitchCommand) string {
	if cmd == nil {
		return ""
	}
	return " and before the --before-switch command ran"
}

// calledOff says what a called-off hold leaves: the previous release
// serves and gets the held requests, release r is stopped.
func (e *Engine) calledOff(r *Release) string {
	e.mu.Lock()
	active := e.active
	e.mu.Unlock()
	if active == nil {
		return fmt.Sprintf("release %s was stopped; no release was active, so the requests held for the deploy were answered 503 (no active release).", r.ID)
	}
	return fmt.Sprintf("release %s keeps serving (the requests held for the deploy go on to it) and release %s was stopped.", active.ID, r.ID)
}

// requestsWere is "1 request was", "3 requests were".
func requestsWere(n int64) string {
	if n == 1 {
		return "1 request was"
	}
	return fmt.Sprintf("%d requests were", n)
}
