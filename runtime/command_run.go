package runtime

import (
	"context"
	"io"
	"os"
	"syscall"
	"time"
)

// Command is a one-off shell command the engine runs and waits for (the
// deploy's --before-switch command): behind a gate, in its own process
// group, with a deadline.
type Command struct {
	Command string // run with /bin/sh -c
	Dir     string
	Env     []string
	// Output gets stdout and stderr through one descriptor, so the lines
	// keep their order; stdin is /dev/null.
	Output io.Writer
	// Record is called with the shell's pid (also its group id) and start
	// time before the command may run; when it fails, the command never
	// runs and RunCommand reports it in Unrecorded.
	Record func(pid int, startTime uint64) error
	// Deadline ends the run: the group gets SIGTERM, then SIGKILL after
	// KillAfter. AtDeadline, when not nil, is called the moment it
	// passes, before the group is signalled.
	Deadline   time.Time
	AtDeadline func()
	KillAfter  time.Duration
	// ReadGrace bounds the read of the output once the group is gone: a
	// child that left the group (setsid) and kept the pipe open must not
	// hold the caller.
	ReadGrace time.Duration
}

// CommandResult is how a Command ended.
type CommandResult struct {
	ExitCode *int    // set when it exited
	Signal   *string // set when a signal ended it ("SIGKILL")
	TimedOut bool    // the deadline passed and it was stopped
	Aborted  bool    // ctx ended and it was stopped
	Duration time.Duration
	StartErr error // it could not be started (or waited for)
	// Unrecorded is Record's error: the command did not run.
	Unrecorded error
}

// RunCommand runs c and waits for it. When the deadline passes or ctx
// ends, its group gets SIGTERM, then SIGKILL after c.KillAfter. Whatever
// the command leaves in its group when it ends is killed: nothing it
// started outlives the run.
func RunCommand(ctx context.Context, c Command) (res CommandResult) {
	began := time.Now()
	defer func() { res.Duration = time.Since(began) }()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		res.StartErr = err
		return res
	}
	defer devNull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		res.StartErr = err
		return res
	}
	cmd, gateR, g, err := gatedCommand(c.Command)
	if err != nil {
		r.Close()
		w.Close()
		res.StartErr = err
		return res
	}
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	cmd.Stdin = devNull
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	gateR.Close() // the child has its own copy
	if err != nil {
		g.drop()
		r.Close()
		res.StartErr = err
		return res
	}
	pgid := cmd.Process.Pid
	if c.Record != nil {
		ticks, _ := StartTime(pgid)
		if err := c.Record(pgid, ticks); err != nil {
			// The gated shell exits at once without running anything.
			g.drop()
			_ = cmd.Wait()
			r.Close()
			res.Unrecorded = err
			return res
		}
	}
	g.open()
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(c.Output, r)
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	timer := time.NewTimer(time.Until(c.Deadline))
	defer timer.Stop()
	var waitErr error
	select {
	case waitErr = <-done:
	case <-timer.C:
		res.TimedOut = true
		if c.AtDeadline != nil {
			c.AtDeadline()
		}
	case <-ctx.Done():
		res.Aborted = true
	}
	if res.TimedOut || res.Aborted {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		kill := time.NewTimer(c.KillAfter)
		select {
		case waitErr = <-done:
			kill.Stop()
		case <-kill.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			waitErr = <-done
		}
	}
	// The shell is reaped; what it left in its group goes too. The group
	// id cannot name another process yet: a pid is not reused while a
	// group of that id has members.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-read:
	case <-time.After(c.ReadGrace):
	}
	r.Close()
	<-read

	res.ExitCode, res.Signal = ExitStatus(waitErr)
	if res.ExitCode == nil && res.Signal == nil {
		res.StartErr = waitErr
	}
	return res
}
