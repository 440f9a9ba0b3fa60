package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
)

// interruptedExit is the exit status of a deploy, rollback or restart
// interrupted with Ctrl-C on a terminal (128 + SIGINT, as shells report
// it; docs/cli.md#waiting-for-another-operation-and-ctrl-c).
const interruptedExit = 130

// opState is what the CLI knows of its own operation in the daemon.
type opState int

const (
	opUnknown     opState = iota // not seen yet (not arrived, or already over)
	opQueued                     // waiting behind another operation
	opRunning                    // holds the operation lock
	opUnsupported                // the daemon has no operations command
)

// ownOperation tells this command's operation from the others, with the
// daemon's operations command: the entry whose client is this process.
// Events are shown only once the operation runs, and only those logged
// since it began (and about its release): never the steps of an
// operation it waited for.
type ownOperation struct {
	pid     int
	command string // deploy, rollback, restart
	release string // the release the request names; "" when the daemon picks it

	state     opState
	startedAt string // the daemon's time the operation began (as events carry it)
	pending   []streamEntry
	ahead     *operationView // what it waits for
	aheadAt   time.Time      // when ahead was read
	queuedAt  time.Time      // when it was first seen waiting
	queuedBy  string         // the daemon's time it was queued (as events carry it)
	nAhead    int            // operations queued before it
	closedAt  time.Time      // when Ctrl-C closed the request's connection
}

// maxPending bounds the events held back while it is not known whether
// they are this command's.
const maxPending = 1000

// operationView is an entry of the operations reply.
type operationView struct {
	ClientPid *int    `json:"clientPid"`
	Command   *string `json:"command"`
	ReleaseID *string `json:"releaseId"`
	RunningMs float64 `json:"runningMs"`
	WaitingMs float64 `json:"waitingMs"`
	Since     string  `json:"since"`
}

// waitedLocked prints how long the operation waited, up to until (the
// daemon's time it began), replacing the redrawn waiting line.
func (p *progress) waitedLocked(until string) {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
	waited := time.Since(p.own.queuedAt)
	from, ok1 := parseISO(p.own.queuedBy)
	to, ok2 := parseISO(until)
	if ok1 && ok2 && !to.Before(from) {
		waited = to.Sub(from)
	}
	fmt.Fprintf(p.w, "  waited %.1f s for %s\n", waited.Seconds(), p.own.ahead.describe())
}

func (v *operationView) describe() string {
	if v == nil || v.Command == nil {
		return "another operation"
	}
	s := termText(*v.Command)
	if v.ReleaseID != nil {
		s += " " + termText(*v.ReleaseID)
	}
	return s
}

// offer takes one event from the stream: shown when it is this
// command's, held back while that is not known yet.
func (p *progress) offer(e streamEntry) {
	var d map[string]any
	_ = json.Unmarshal(e.Data, &d)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastEvent = time.Now()
	switch p.own.state {
	case opRunning, opUnsupported:
		if p.own.accepts(e, d) {
			p.eventLocked(e, d)
		}
	default:
		if len(p.own.pending) == maxPending {
			p.own.pending = p.own.pending[1:]
		}
		p.own.pending = append(p.own.pending, e)
	}
}

// accepts reports whether e belongs to this command's operation: logged
// since it began and, for a deploy or rollback, about its release.
func (o *ownOperation) accepts(e streamEntry, d map[string]any) bool {
	if o.state == opUnsupported {
		return true // an older daemon: show everything, as before
	}
	if o.startedAt != "" && e.At < o.startedAt {
		return false
	}
	// A restart's steps and a deploy's never look alike: whatever the
	// timing, one is never shown as the other.
	restartStep := e.Message == "process restart requested" || (e.Message == "process started" && d["reason"] == "manual")
	if restartStep != (o.command == "restart") {
		return false
	}
	if o.release != "" && (o.command == "deploy" || o.command == "rollback") {
		if id, ok := d["releaseId"].(string); ok && id != o.release {
			return false
		}
	}
	return true
}

// becomeLocked moves to state s and shows the held-back events that
// are this command's.
func (p *progress) becomeLocked(s opState) {
	p.own.state = s
	pending := p.own.pending
	p.own.pending = nil
	for _, e := range pending {
		var d map[string]any
		_ = json.Unmarshal(e.Data, &d)
		if p.own.accepts(e, d) {
			p.eventLocked(e, d)
		}
	}
}

// flushUnknownLocked shows, when the reply came before the operation was
// seen running (it ran and ended between two looks), the held-back
// events that are of its kind and, for a deploy or rollback, about its
// release; with no release to go by after a wait, none.
func (p *progress) flushUnknownLocked() {
	if p.own.state != opUnknown && p.own.state != opQueued {
		return
	}
	if p.own.state == opQueued {
		if p.own.release == "" && p.own.command != "restart" {
			p.own.pending = nil
			return
		}
		// It began with the first of its own events.
		for _, e := range p.own.pending {
			var d map[string]any
			_ = json.Unmarshal(e.Data, &d)
			if p.own.accepts(e, d) {
				p.waitedLocked(e.At)
				break
			}
		}
	}
	p.becomeLocked(opRunning)
}

// waitingLine is the line shown while the operation waits its turn.
func (o *ownOperation) waitingLine() string {
	if o.state != opQueued {
		return ""
	}
	running := time.Since(o.aheadAt).Seconds()
	if o.ahead != nil {
		running += o.ahead.RunningMs / 1000
	}
	line := fmt.Sprintf("waiting for %s (running %.1f s)", o.ahead.describe(), running)
	if o.nAhead > 0 {
		line += fmt.Sprintf(", then %d more queued before this %s", o.nAhead, o.command)
	}
	return line
}

// watchOwn asks the daemon every pollEvery what runs and what waits,
// until this command's operation runs (or the daemon does not know the
// command, or the progress ends).
func (p *progress) watchOwn() {
	const pollEvery = 100 * time.Millisecond
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		state := p.lookOwn(pollTimeout)
		if state == opRunning || state == opUnsupported {
			return
		}
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// pollTimeout bounds one look at the daemon's operations; after Ctrl-C
// the look is shorter (interruptTimeout), so a daemon that does not
// answer cannot hold the person at the terminal.
const (
	pollTimeout      = 5 * time.Second
	interruptTimeout = time.Second
)

// lookOwn asks the daemon once and updates what is known.
func (p *progress) lookOwn(timeout time.Duration) opState {
	raw, err := control.Call(engine.ControlEndpoint(p.plan.Control), control.SortedRequest("operations"), timeout)
	var de *control.DaemonError
	if errors.As(err, &de) && strings.HasPrefix(de.Message, "Unknown command") {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.becomeLocked(opUnsupported)
		return opUnsupported
	}
	var ops struct {
		Running *operationView  `json:"running"`
		Queued  []operationView `json:"queued"`
	}
	if err != nil || json.Unmarshal(raw, &ops) != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.own.state
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.own.state == opRunning {
		return opRunning
	}
	if r := ops.Running; r != nil && r.ClientPid != nil && *r.ClientPid == p.own.pid {
		if since, ok := parseISO(r.Since); ok && !p.own.closedAt.IsZero() && since.After(p.own.closedAt) {
			// The lock reached it after this command hung up: the daemon
			// drops it at once. (Since is cut to the millisecond, so one
			// that began just before the hang-up never reads as after.)
			return opQueued
		}
		if p.own.release == "" && r.ReleaseID != nil {
			p.own.release = *r.ReleaseID
		}
		if p.own.release == "" && p.own.command != "restart" && p.own.command != "stop" {
			return opUnknown // its release is picked in a moment; keep holding events back
		}
		p.own.startedAt = r.Since
		if p.own.state == opQueued {
			p.waitedLocked(r.Since)
		}
		p.becomeLocked(opRunning)
		return opRunning
	}
	for i, q := range ops.Queued {
		if q.ClientPid != nil && *q.ClientPid == p.own.pid {
			if p.own.state != opQueued {
				p.own.queuedAt = time.Now().Add(-time.Duration(q.WaitingMs) * time.Millisecond)
				p.own.queuedBy = q.Since
			}
			p.own.state = opQueued
			p.own.ahead, p.own.aheadAt, p.own.nAhead = ops.Running, time.Now(), i
			return opQueued
		}
	}
	return p.own.state
}

// call sends the command's request and waits for the reply; with
// progress shown (a terminal), Ctrl-C ends the wait with a word on what
// becomes of the operation (interrupted). p may be nil.
func (p *progress) call(plan *jsconfig.Plan, request []byte) ([]byte, error) {
	ep := engine.ControlEndpoint(plan.Control)
	if p == nil {
		return control.Call(ep, request, 0)
	}
	var req struct {
		Command   string  `json:"command"`
		ReleaseID *string `json:"releaseId"`
		Revision  *string `json:"revision"`
	}
	_ = json.Unmarshal(request, &req)
	p.mu.Lock()
	p.own.pid, p.own.command = os.Getpid(), req.Command
	switch { // the daemon's rule: the id, else the revision; "" is not given
	case req.ReleaseID != nil && *req.ReleaseID != "":
		p.own.release = *req.ReleaseID
	case req.Revision != nil && *req.Revision != "":
		p.own.release = *req.Revision
	}
	p.mu.Unlock()

	interrupt := make(chan os.Signal, 1)
	signal.Notify(interrupt, syscall.SIGINT)
	defer signal.Stop(interrupt)
	type reply struct {
		raw []byte
		err error
	}
	replied := make(chan reply, 1)
	ctx, hangUp := context.WithCancel(context.Background())
	defer hangUp()
	go func() {
		raw, err := control.CallContext(ctx, ep, request)
		replied <- reply{raw, err}
	}()
	go p.watchOwn()
	select {
	case r := <-replied:
		return r.raw, r.err
	case <-interrupt:
		signal.Stop(interrupt) // a second Ctrl-C ends the command at once
		// Hang up before looking: the daemon does not run a queued
		// operation whose client is gone, so from here on what waits is
		// dropped. Looking first would leave the lock time to pass to it
		// after it was called dropped.
		hangUp()
		r := <-replied // the call has closed the connection
		var timeout *control.TimeoutError
		if !errors.As(r.err, &timeout) {
			return r.raw, r.err // the answer came first: the command ended
		}
		p.mu.Lock()
		p.own.closedAt = time.Now()
		p.mu.Unlock()
		p.interrupted()
		return nil, exitCode(interruptedExit)
	}
}

// interrupted says, after Ctrl-C and the request's connection closed,
// what becomes of the operation: a running one goes on in the daemon
// (closing the connection does not stop it); a waiting one is dropped
// (the daemon does not run an operation whose client left while it
// waited).
func (p *progress) interrupted() {
	state := p.lookOwn(interruptTimeout)
	p.stop()
	p.mu.Lock()
	p.cut = true
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K") // also wipes the terminal's "^C"
		p.drawn = false
	} else {
		fmt.Fprintln(p.w) // ends the line the terminal echoed "^C" on
	}
	what := p.own.command
	if p.own.release != "" {
		what += " of " + termText(p.own.release)
	}
	config := ""
	if p.plan.Path != "" {
		config = " -c " + termText(shellQuote(p.plan.Path))
	}
	switch state {
	case opRunning:
		fmt.Fprintf(p.w, "Interrupted: the %s goes on in the daemon; stopping this command does not stop it.\n", what)
		fmt.Fprintf(p.w, "  Follow it with: rollbridge events --follow%s\n", config)
	case opQueued:
		fmt.Fprintf(p.w, "Interrupted: the %s was waiting for %s and is dropped; the daemon will not run it.\n", what, p.own.ahead.describe())
	default:
		fmt.Fprintf(p.w, "Interrupted: if the %s had started, it goes on in the daemon; if it was waiting behind another operation, it is dropped.\n", what)
		fmt.Fprintf(p.w, "  Follow it with: rollbridge events --follow%s\n", config)
	}
}
