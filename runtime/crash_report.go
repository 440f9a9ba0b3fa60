package runtime

import "time"

// ExitCause is one way a process ended by itself: an exit code or a
// signal, and how often it ended that way.
type ExitCause struct {
	Code   *int    // nil when the process was killed by a signal, or unknown
	Signal *string // "SIGKILL", …; nil for an exit code, or unknown
	Count  int
}

// CrashReport is what happened to a process since its last deploy or
// manual start: the exits nobody asked for, the automatic restarts, and
// whether the restart policy gave up.
type CrashReport struct {
	Causes   []ExitCause // in order of first occurrence
	Restarts int
	// GaveUp: the process will not run again by itself (its restart limit
	// was reached, or its restart gate is closed).
	GaveUp bool
	// Settling: an exit is counted, but its output may still be on the
	// way; Crashed closes once it has arrived.
	Settling bool
}

// Exits is the number of exits nobody asked for.
func (r CrashReport) Exits() int {
	n := 0
	for _, c := range r.Causes {
		n += c.Count
	}
	return n
}

// crashOutputWait bounds how long a crash notice waits for the last lines
// the command wrote before it died: they travel through a pipe, which a
// grandchild that survived may keep open.
const crashOutputWait = 200 * time.Millisecond

// CrashReport returns the report since the last deploy or manual start.
func (p *Process) CrashReport() CrashReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.crashes
	r.Causes = append([]ExitCause(nil), r.Causes...)
	r.Settling = p.settling > 0
	return r
}

// Crashed returns a channel closed at the next exit nobody asked for,
// once the restart policy has decided about it (CrashReport then holds
// the exit, and GaveUp when no restart follows) and the command's output
// up to its exit has been captured (bounded by a short wait). Take the
// channel before reading CrashReport so that no crash is missed.
func (p *Process) Crashed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.crashCh == nil {
		p.crashCh = make(chan struct{})
	}
	return p.crashCh
}

// recordCrashLocked counts an exit nobody asked for.
func (p *Process) recordCrashLocked(code *int, signal *string) {
	p.settling++ // until announceCrash
	for i := range p.crashes.Causes {
		c := &p.crashes.Causes[i]
		if (code != nil && c.Code != nil && *c.Code == *code) || (signal != nil && c.Signal != nil && *c.Signal == *signal) {
			c.Count++
			return
		}
	}
	p.crashes.Causes = append(p.crashes.Causes, ExitCause{Code: code, Signal: signal, Count: 1})
}

// announceCrash wakes the waiters of Crashed, after the output of the
// spawn that exited was captured or crashOutputWait passed; settled
// ends the Settling of an exit that recordCrashLocked counted.
func (p *Process) announceCrash(outputDone <-chan struct{}, settled bool) {
	if outputDone != nil {
		select {
		case <-outputDone:
		case <-time.After(p.outputWait):
		}
	}
	p.mu.Lock()
	if settled {
		p.settling--
	}
	ch := p.crashCh
	p.crashCh = nil
	p.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}
