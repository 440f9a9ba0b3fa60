package runtime

import (
	"syscall"
	"time"
)

// indefiniteHookTimeout bounds quiet and stop hooks when gracefulStopMs is
// "indefinite" (docs/processes.md#42-lifecycle-hooks).
const indefiniteHookTimeout = 30 * time.Second

// killWait is how long the group may take to disappear after SIGKILL.
const killWait = 5 * time.Second

// Stop runs the graceful stop sequence
// (docs/processes.md#4-the-stop-sequence) and returns when the whole process
// group is gone. Concurrent and repeated calls for the same spawn share one
// run. The process stays down until the next Start.
func (p *Process) Stop() {
	p.mu.Lock()
	p.stopRequested = true
	p.mu.Unlock()
	p.stop()
}

// StopAsync starts the stop sequence like Stop without waiting for it:
// quiesced is closed once nothing restarts the process any more and its
// quiet hook has run, done when the group is gone.
func (p *Process) StopAsync() (quiesced, done <-chan struct{}) {
	p.mu.Lock()
	p.stopRequested = true
	run := p.stopRun
	if run == nil {
		run = &stopRun{quiesced: make(chan struct{}), done: make(chan struct{})}
		p.stopRun = run
		go p.runStop(run)
	}
	p.mu.Unlock()
	return run.quiesced, run.done
}

// stop is the shared sequence; a memory restart uses it without asking
// the process to stay down.
func (p *Process) stop() {
	p.mu.Lock()
	if run := p.stopRun; run != nil {
		p.mu.Unlock()
		<-run.done
		return
	}
	run := &stopRun{quiesced: make(chan struct{}), done: make(chan struct{})}
	p.stopRun = run
	p.mu.Unlock()
	p.runStop(run)
}

func (p *Process) runStop(run *stopRun) {
	defer close(run.done)
	defer run.markQuiesced()
	p.stopSequence(run)
}

func (p *Process) stopSequence(run *stopRun) {
	// 1–2: quiesce. From here an exit is intentional and nothing restarts.
	// A spawn in progress finishes first, so its child is stopped too.
	p.spawnMu.Lock()
	p.mu.Lock()
	p.spawnMu.Unlock()
	pgid := p.pid
	if pgid == 0 {
		pgid = p.lastPid
	}
	p.stopTimersLocked()
	if p.pid == 0 {
		p.state = StateStopped
		leftovers := p.leftovers
		p.mu.Unlock()
		if leftovers != nil {
			<-leftovers // what a crashed command left behind is being stopped
		}
		return
	}
	p.state = StateStopping
	spec := p.spec
	exitCh := p.exitCh
	p.mu.Unlock()

	hookTimeout := spec.GracefulStop
	if spec.Indefinite {
		hookTimeout = indefiniteHookTimeout
	}
	hookEnv := append(append([]string(nil), spec.Env...), "ROLLBRIDGE_PID="+itoa(pgid))
	if c := spec.Lifecycle.QuietCommand; c != "" {
		p.runHook("quiet command", c, hookTimeout, spec, hookEnv)
	}
	run.markQuiesced()

	// 4: drain, bounded by drainTimeoutMs.
	if groupAlive(pgid) && spec.Lifecycle.DrainTimeout > 0 {
		if c := spec.Lifecycle.DrainCommand; c != "" {
			p.runHook("drain command", c, spec.Lifecycle.DrainTimeout, spec, hookEnv)
		} else {
			select {
			case <-exitCh:
			case <-time.After(spec.Lifecycle.DrainTimeout):
			}
		}
	}

	// 5: stop command or stop signal, then SIGKILL after gracefulStopMs.
	if groupAlive(pgid) {
		if c := spec.Lifecycle.StopCommand; c != "" {
			p.runHook("stop command", c, hookTimeout, spec, hookEnv)
		} else {
			_ = syscall.Kill(-pgid, spec.StopSignal)
		}
		limit := spec.GracefulStop
		if spec.Indefinite {
			limit = -1
		}
		killAfter(spec, pgid, limit, p.emit)
	}

	// 6–7: the leader's exit has been observed once Wait returned.
	<-exitCh
	p.mu.Lock()
	p.state = StateStopped
	p.mu.Unlock()
}

// killAfter waits up to limit (forever when negative) for the group to go,
// then SIGKILLs what is left.
func killAfter(spec Spec, pgid int, limit time.Duration, emit func(string, ...Field)) {
	if !waitGroupGone(pgid, limit) {
		emit("process stop timed out; sending SIGKILL", Field{"id", spec.ID}, Field{"pid", pgid})
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		waitGroupGone(pgid, killWait)
	}
}

// terminateGroup stops what a crashed command left in its group: the stop
// signal, then SIGKILL after gracefulStopMs (30 s when "indefinite").
func terminateGroup(spec Spec, pgid int, emit func(string, ...Field)) {
	_ = syscall.Kill(-pgid, spec.StopSignal)
	limit := spec.GracefulStop
	if spec.Indefinite {
		limit = indefiniteHookTimeout
	}
	killAfter(spec, pgid, limit, emit)
}

// waitGroupGone polls every 10 ms until the group has no live member, for
// at most limit (forever when limit < 0). It reports whether it is gone.
func waitGroupGone(pgid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	g := newGroupScanner(pgid)
	for {
		if !g.alive() {
			return true
		}
		if limit >= 0 && !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runHook runs a lifecycle hook through the shell in its own process
// group, in the process's directory and environment plus ROLLBRIDGE_PID,
// with its output discarded. Every outcome is reported; none stops the
// sequence.
func (p *Process) runHook(label, command string, timeout time.Duration, spec Spec, env []string) {
	cmd, gateR, g, err := gatedCommand(command)
	if err != nil {
		p.emit(label+" failed", Field{"error", err.Error()}, Field{"id", spec.ID})
		return
	}
	cmd.Dir = spec.Dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	gateR.Close()
	if err != nil {
		g.drop()
		p.emit(label+" failed", Field{"error", err.Error()}, Field{"id", spec.ID})
		return
	}
	// Recorded before it runs: if the owner dies, nothing bounds a hook
	// any more, so whoever cleans up must find it.
	pid := cmd.Process.Pid
	ticks, _ := StartTime(pid)
	p.addHook(Hook{Label: label, PID: pid, StartTime: ticks})
	defer p.removeHook(pid)
	p.spawned(Spawn{ID: spec.ID, Hook: label, PID: pid, StartTime: ticks})
	g.open()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		switch code, signal := ExitStatus(err); {
		case signal != nil:
			p.emit(label+" exited on signal", Field{"id", spec.ID}, Field{"signal", *signal})
		case code != nil && *code != 0:
			p.emit(label+" exited non-zero", Field{"code", *code}, Field{"id", spec.ID})
		}
	case <-timer.C:
		p.emit(label+" timed out", Field{"id", spec.ID}, Field{"timeoutMs", millis(timeout)})
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// StopBound is the longest the stop sequence of spec can take until its
// process group is gone: the quiet hook, the drain step, the stop hook,
// gracefulStopMs for the group to go and the wait after SIGKILL. ok is
// false when gracefulStopMs is "indefinite": then nothing is ever
// SIGKILLed and the stop has no bound.
func (s Spec) StopBound() (d time.Duration, ok bool) {
	if s.Indefinite {
		return 0, false
	}
	hook := s.GracefulStop
	if s.Lifecycle.QuietCommand != "" {
		d += hook
	}
	if s.Lifecycle.DrainTimeout > 0 {
		d += s.Lifecycle.DrainTimeout
	}
	if s.Lifecycle.StopCommand != "" {
		d += hook
	}
	return d + s.GracefulStop + killWait, true
}
