package engine

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"golang.org/x/sys/unix"
)

// The backoff of a listener whose accept fails for a reason that passes:
// 5 ms, doubling up to 1 s between attempts (docs/troubleshooting.md,
// "Too many open files"). A burst of failures ends after burstQuiet
// without one: while descriptors are freed one at a time, accepts and
// failures alternate, and that is still one burst.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
	burstQuiet     = time.Second
)

// retryingListener keeps a daemon's accept loop alive through errors that
// pass by themselves: out of file descriptors (EMFILE, ENFILE), out of
// memory or buffers, a connection reset or aborted before it was accepted,
// and the network errors Linux reports through accept. It waits and tries
// again instead of handing the error to its Serve loop, which would end
// (the control server's did: one EMFILE made the daemon deaf for good).
// Each burst of failures is logged once, when it begins, and its end once,
// burstQuiet after the last failure. Accept returns an error only when
// the listener was closed or failed for good.
type retryingListener struct {
	net.Listener
	name  string // "proxy", "control", "metrics"
	log   func(message string, data ...jsconfig.Field)
	quiet time.Duration // burstQuiet

	closeOnce sync.Once
	closed    chan struct{}

	// inBurst mirrors failures > 0, so an accept outside a burst (every
	// client connection of a healthy proxy) takes no lock.
	inBurst atomic.Bool

	mu       sync.Mutex
	failures int       // in the current burst
	began    time.Time // its first failure
	last     time.Time // its latest failure
	ending   bool      // a check for its end is scheduled
}

// keepAccepting wraps ln; log receives the accept failed / recovered
// events of the listener called name.
func keepAccepting(ln net.Listener, name string, log func(string, ...jsconfig.Field)) *retryingListener {
	return &retryingListener{Listener: ln, name: name, log: log, quiet: burstQuiet, closed: make(chan struct{})}
}

// Accept waits for the next connection.
func (l *retryingListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.accepted()
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if l.isClosed() {
			// Close overtook this attempt: its failure is not news, and a
			// temporary one must not read as a broken listener.
			return nil, net.ErrClosed
		}
		if !temporaryAcceptError(err) {
			return nil, err
		}
		l.failed(err)
		delay = min(max(2*delay, acceptRetryMin), acceptRetryMax)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// failed counts a failure; the first of a burst is logged.
func (l *retryingListener) failed(err error) {
	now := time.Now()
	l.mu.Lock()
	first := l.failures == 0
	if first {
		l.began = now
	}
	l.failures++
	l.last = now
	l.inBurst.Store(true)
	l.mu.Unlock()
	if first {
		l.log("accept failed", jsconfig.Field{Key: "error", Value: acceptErrorText(err)}, jsconfig.Field{Key: "listener", Value: l.name})
	}
}

// accepted schedules the check that ends a burst once no failure came
// for l.quiet.
func (l *retryingListener) accepted() {
	if !l.inBurst.Load() {
		return
	}
	l.mu.Lock()
	schedule := l.failures > 0 && !l.ending
	l.ending = l.ending || schedule
	l.mu.Unlock()
	if schedule {
		time.AfterFunc(l.quiet, l.endBurst)
	}
}

// endBurst logs the end of a burst that has been quiet long enough, or
// checks again later.
func (l *retryingListener) endBurst() {
	l.mu.Lock()
	if wait := l.quiet - time.Since(l.last); wait > 0 {
		l.mu.Unlock()
		time.AfterFunc(wait, l.endBurst)
		return
	}
	failures, lasted := l.failures, l.last.Sub(l.began)
	l.failures, l.ending = 0, false
	l.inBurst.Store(false)
	l.mu.Unlock()
	l.log("accept recovered",
		jsconfig.Field{Key: "durationMs", Value: lasted.Milliseconds()},
		jsconfig.Field{Key: "failures", Value: failures},
		jsconfig.Field{Key: "listener", Value: l.name})
}

// Close closes the listener and ends a wait between two attempts.
func (l *retryingListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *retryingListener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// temporaryAcceptError reports whether an accept error passes by itself:
// resource exhaustion, a connection that went away before it was
// accepted, or one of the pending network errors Linux's accept(2)
// returns for the new connection ("treat them like EAGAIN"). Anything
// else (EBADF, EINVAL, ENOTSOCK…) means the listener itself is broken.
func temporaryAcceptError(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}
	switch errno {
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN,
		syscall.ETIMEDOUT, syscall.EPERM, syscall.EPROTO, syscall.ENOPROTOOPT,
		syscall.ENETDOWN, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.EHOSTUNREACH,
		syscall.ENONET, syscall.EOPNOTSUPP:
		return true
	}
	return false
}

// acceptErrorText names an accept error by its errno ("EMFILE: too many
// open files"); the listener's address is in the event already, and a
// control socket's would be its temporary bind name.
func acceptErrorText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno) + ": " + errno.Error()
	}
	return err.Error()
}
