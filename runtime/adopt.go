package runtime

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Adopted is a command that is running without a supervisor, as an
// earlier daemon recorded it: a daemon that restarts after a crash takes
// its processes back instead of orphaning them.
type Adopted struct {
	PID             int    // leads its own process group
	StartTime       uint64 // /proc start time (clock ticks after boot) the pid had when recorded
	StartedAt       time.Time
	LastStartReason string
	Restarts        int
	MemoryRestarts  int
	// LastMemoryRestartAt is when the last memory restart was; zero: none.
	LastMemoryRestartAt time.Time
	// Stdout and Stderr are the read ends of the command's output pipes,
	// as kept in systemd's fd store; nil when they were lost.
	Stdout, Stderr *os.File
}

// Adopt returns a running Process for a command that an earlier daemon
// spawned for spec and that is still alive: its pid, start time and
// counters are taken as recorded. It is supervised like a spawned one
// (exit detection, restart policy, memory checks, the stop sequence and
// output capture from the given pipes), except that, not being our
// child, its exit status cannot be read: an exit is reported with code
// and signal null and "status":"unknown". OnSpawn is not called, as the
// command is on record already.
//
// The Process owns a.Stdout and a.Stderr from the call on, and closes
// them also when Adopt fails. Adopt fails, and nothing is supervised,
// when the pid is gone, a zombie, no longer leads its group, or has
// another start time (the pid was reused): the caller treats it as an
// orphan.
func Adopt(spec Spec, opts Options, a Adopted) (*Process, error) {
	closePipes := func() {
		for _, f := range []*os.File{a.Stdout, a.Stderr} {
			if f != nil {
				f.Close()
			}
		}
	}
	pidfd, err := openConfirmed(spec.ID, a.PID, a.StartTime)
	if err != nil {
		closePipes()
		return nil, err
	}
	exitCh := make(chan struct{})
	p := New(spec, opts)
	p.mu.Lock()
	p.state = StateRunning
	p.pid, p.lastPid = a.PID, a.PID
	p.generation++
	gen := p.generation
	p.startedAt = a.StartedAt
	p.startTicks = a.StartTime
	p.lastStartReason = a.LastStartReason
	p.restarts, p.memoryRestarts = a.Restarts, a.MemoryRestarts
	p.lastMemRestart = a.LastMemoryRestartAt
	p.adoptedAt = p.clock.Now()
	p.outputLost = a.Stdout == nil || a.Stderr == nil
	p.exitCh = exitCh
	if spec.Memory != nil {
		p.memTimer = p.clock.AfterFunc(spec.Memory.CheckInterval, func() { p.checkMemory(gen) })
	}
	p.mu.Unlock()

	// The fd store has these pipes already: only their end is reported.
	shared := a.Stdout != nil || a.Stderr != nil
	outputDone := p.capture(a.Stdout, a.Stderr, OutputPipes{PID: a.PID, StartTime: a.StartTime}, shared)
	go func() {
		awaitExit(pidfd)
		pidfd.Close()
		p.ended(exitInfo{gen: gen, pgid: a.PID, exitCh: exitCh, outputDone: outputDone, unknown: true})
	}()
	return p, nil
}

// openConfirmed opens a pidfd for pid and then confirms from /proc that
// pid is alive, leads its own group and has the recorded start time. In
// that order, the pidfd is known to be the recorded process: had the pid
// been reused before the open, the start time would differ.
func openConfirmed(id string, pid int, startTime uint64) (*os.File, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("cannot adopt %s: pid %d is not a process id", id, pid)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("cannot adopt %s: pid %d is gone", id, pid)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot adopt %s: watching pid %d: %w", id, pid, err)
	}
	pidfd, err := newPollable(fd, "pidfd")
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("cannot adopt %s: watching pid %d: %w", id, pid, err)
	}
	pgid, ticks, ok := Identity(pid)
	switch {
	case !ok:
		err = fmt.Errorf("cannot adopt %s: pid %d is gone", id, pid)
	case ticks != startTime:
		err = fmt.Errorf("cannot adopt %s: pid %d started at tick %d, not at the recorded %d: the pid now names another process", id, pid, ticks, startTime)
	case pgid != pid:
		err = fmt.Errorf("cannot adopt %s: pid %d is in process group %d, not leading its own", id, pid, pgid)
	}
	if err != nil {
		pidfd.Close()
		return nil, err
	}
	return pidfd, nil
}

// newPollable wraps fd in a File that Go's poller watches, so waiting on
// it holds no thread.
func newPollable(fd int, name string) (*os.File, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// awaitExit returns once the process of pidfd has exited: a pidfd polls
// readable then, whether or not the process was reaped yet. It waits in
// Go's poller; where the poller cannot watch the pidfd, a thread blocks
// in poll instead. It never returns before the exit: a false exit would
// start a second copy of the command beside the first.
func awaitExit(pidfd *os.File) {
	rc, err := pidfd.SyscallConn()
	if err != nil { // only for a nil File
		panic("runtime: awaitExit: " + err.Error())
	}
	if rc.Read(func(fd uintptr) bool { return pidExited(fd, 0) }) == nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		for !pidExited(fd, -1) {
		}
	})
}

// pidExited polls pidfd for up to timeout milliseconds (-1: no limit)
// and reports whether its process has exited. A failing poll (out of
// memory) is retried: it proves nothing about the process.
func pidExited(pidfd uintptr, timeout int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, timeout)
		switch {
		case err == nil:
			return n > 0 && fds[0].Revents != 0
		case err != unix.EINTR:
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// CanAdopt reports whether this system lets the daemon watch a process it
// did not start: Adopt needs pidfd_open (Linux 5.3 or later, and not
// denied by a syscall filter). Without it no process can be adopted, and
// the caller must leave them all alone rather than start them anew
// beside the ones still running.
func CanAdopt() error {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	unix.Close(fd)
	return nil
}
