package runtime

import (
	"time"
)

// Child is one member of a process group, as status reports it.
type Child struct {
	Command  string
	PID      int
	RSSBytes *int64 // nil when it could not be read (a zombie, say)
}

// sampleGroup lists the members of the process group with their resident
// memory. ok is false when the group cannot be listed (no /proc).
func sampleGroup(g *groupScanner) (children []Child, total *int64, ok bool) {
	members, ok := g.members()
	if !ok {
		return nil, nil, false
	}
	var sum int64
	counted := false
	for _, m := range members {
		c := Child{Command: m.comm, PID: m.pid}
		if m.state != 'Z' && m.state != 'X' { // a zombie has no memory to report
			rss := m.rssBytes
			c.RSSBytes = &rss
			sum += rss
			counted = true
		}
		children = append(children, c)
	}
	if counted {
		total = &sum
	}
	return children, total, true
}

// checkMemory samples the group of spawn gen and applies the memory policy
// (docs/processes.md#6-memory-supervision): warn once above warnBytes,
// restart gracefully above limitBytes.
func (p *Process) checkMemory(gen int) {
	p.mu.Lock()
	p.memTimer = nil
	mem := p.spec.Memory
	if gen != p.generation || p.pid == 0 || p.memRestarting || mem == nil || p.stopRun != nil {
		p.mu.Unlock()
		return
	}
	if p.memScanner == nil || p.memScanner.pgid != p.pid {
		p.memScanner = newGroupScanner(p.pid)
	}
	scanner := p.memScanner
	p.mu.Unlock()

	children, rss, ok := sampleGroup(scanner)

	p.mu.Lock()
	if gen != p.generation || p.pid == 0 || p.stopRun != nil {
		p.mu.Unlock()
		return
	}
	if ok && len(children) > 0 {
		p.children = children
		if rss != nil {
			p.rssBytes = rss
		}
	}
	id := p.spec.ID
	var current int64
	if p.rssBytes != nil {
		current = *p.rssBytes
	}
	switch {
	case p.rssBytes != nil && float64(current) > mem.LimitBytes:
		p.memRestarting = true
		p.mu.Unlock()
		p.emit("memory limit exceeded", Field{"id", id}, Field{"limitBytes", mem.LimitBytes}, Field{"rssBytes", current})
		go p.memoryRestart()
		return
	case mem.WarnBytes > 0 && p.rssBytes != nil && float64(current) > mem.WarnBytes:
		warn := !p.memWarned
		p.memWarned = true
		p.rearmMemoryLocked(gen, mem.CheckInterval)
		p.mu.Unlock()
		if warn {
			p.emit("memory warning", Field{"id", id}, Field{"rssBytes", current}, Field{"warnBytes", mem.WarnBytes})
		}
		return
	case p.rssBytes != nil && float64(current) <= mem.WarnBytes:
		p.memWarned = false
	}
	p.rearmMemoryLocked(gen, mem.CheckInterval)
	p.mu.Unlock()
}

func (p *Process) rearmMemoryLocked(gen int, every time.Duration) {
	p.memTimer = p.clock.AfterFunc(every, func() { p.checkMemory(gen) })
}

// memoryRestart stops the process gracefully and starts it again with
// reason "memory", unless it was asked to stay down meanwhile or its
// auto-restart gate closed.
func (p *Process) memoryRestart() {
	defer func() {
		p.mu.Lock()
		p.memRestarting = false
		p.mu.Unlock()
	}()
	p.stop()
	p.mu.Lock()
	if p.stopRequested || !p.gateOpenLocked() {
		p.mu.Unlock()
		return
	}
	p.memoryRestarts++
	p.lastMemRestart = p.clock.Now()
	id := p.spec.ID
	gen := p.generation
	p.mu.Unlock()
	aborted := func() bool { return p.stopRequested || p.generation != gen }
	if err := p.start(ReasonMemory, aborted); err != nil {
		p.emit("memory restart failed", Field{"error", err.Error()}, Field{"id", id})
		// Like a failed crash respawn: the restart policy takes over.
		p.scheduleRestart(gen)
	}
}

// startTolerance is how far the start time /proc shows may be from the
// one the daemon recorded: /proc's boot time is whole seconds, and the
// daemon notes the start just after the fork.
const startTolerance = 2 * time.Second

// GroupRSS measures the resident memory of the process group led by pid,
// as the daemon reports it when it samples memory: the sum over the
// members that are not zombies. startedAt is when the daemon says the
// process started. ok is false, and nothing is guessed, when /proc here
// does not show pid leading its group and started within startTolerance
// of startedAt (in another pid namespace the same number names another
// process, or none), when /proc cannot be read, or when no member's
// memory could be.
func GroupRSS(pid int, startedAt time.Time) (bytes int64, ok bool) {
	pgid, ticks, ok := Identity(pid)
	if !ok || pgid != pid {
		return 0, false
	}
	at, ok := StartedAt(ticks)
	if !ok || at.Sub(startedAt).Abs() > startTolerance {
		return 0, false
	}
	_, total, ok := sampleGroup(newGroupScanner(pgid))
	if !ok || total == nil {
		return 0, false
	}
	return *total, true
}
