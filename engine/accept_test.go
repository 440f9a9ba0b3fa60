package engine

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"golang.org/x/sys/unix"
)

// scriptedListener returns the errors of script, one per Accept, then
// the connections of conns; a closed one returns net.ErrClosed.
type scriptedListener struct {
	mu     sync.Mutex
	script []error
	conns  []net.Conn
	at     []time.Time // when Accept was called
	closed bool
	// attemptsBeforeClose is len(at) when Close was called.
	attemptsBeforeClose int
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, time.Now())
	switch {
	case l.closed:
		return nil, net.ErrClosed
	case len(l.script) > 0:
		err := l.script[0]
		l.script = l.script[1:]
		return nil, err
	case len(l.conns) > 0:
		c := l.conns[0]
		l.conns = l.conns[1:]
		return c, nil
	}
	return nil, &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EBADF)}
}

func (l *scriptedListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.attemptsBeforeClose = len(l.at)
	l.mu.Unlock()
	return nil
}

func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{} }

type recordedEvent struct {
	message string
	data    jsconfig.Object
}

type eventRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (r *eventRecorder) log(message string, data ...jsconfig.Field) {
	r.mu.Lock()
	r.events = append(r.events, recordedEvent{message, jsconfig.Object(data)})
	r.mu.Unlock()
}

func acceptError(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// A burst of temporary errors is retried with a growing delay and logged
// once when it begins and once when it ends.
func TestKeepAcceptingRetriesTemporaryErrors(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	var script []error
	for i := 0; i < 8; i++ {
		script = append(script, acceptError([]syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ECONNABORTED}[i%4]))
	}
	raw := &scriptedListener{script: script, conns: []net.Conn{c1}}
	var rec eventRecorder
	ln := keepAccepting(raw, "control", rec.log)
	ln.quiet = 50 * time.Millisecond
	c, err := ln.Accept()
	if err != nil || c != c1 {
		t.Fatalf("Accept: %v, %v", c, err)
	}
	waitFor(t, "the end of the burst", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.events) == 2 })
	if rec.events[0].message != "accept failed" || rec.events[1].message != "accept recovered" {
		t.Fatalf("events: %+v", rec.events)
	}
	if got := rec.events[0].data; got[1].Value != "control" || got[0].Value != "EMFILE: too many open files" {
		t.Fatalf("accept failed data: %+v", got)
	}
	if got := rec.events[1].data; got[1].Value != 8 {
		t.Fatalf("accept recovered data: %+v", got)
	}
	// 5, 10, 20, 40, 80, 160, 320, 640 ms: each gap is at least its
	// doubled delay (a busy machine can only lengthen one, so comparing a
	// gap with the one before would fail when an early gap ran long), and
	// the whole burst took at least their sum.
	for i, want := 1, acceptRetryMin; i < len(raw.at); i, want = i+1, want*2 {
		if gap := raw.at[i].Sub(raw.at[i-1]); gap < want {
			t.Fatalf("attempt %d came %v after the one before, want at least %v: %v", i, gap, want, raw.at)
		}
	}
	if total := raw.at[len(raw.at)-1].Sub(raw.at[0]); total < 1275*time.Millisecond {
		t.Fatalf("8 retries took %v, want at least 1.275 s of backoff", total)
	}
}

// While descriptors come free one at a time, accepts and failures
// alternate: that is one burst, logged once when it begins and once when
// no failure came for a while, not once per freed descriptor.
func TestKeepAcceptingLogsAChurningBurstOnce(t *testing.T) {
	var rec eventRecorder
	raw := &scriptedListener{}
	ln := keepAccepting(raw, "proxy", rec.log)
	// Two failures of the churn are 5 ms of backoff apart, but each gap
	// also holds two wake-ups: on a loaded machine one gap took over 1 s
	// (a 300 ms quiet split the burst in 6 of 500 runs). The quiet must
	// outlast every gap; any length does to tell one burst from one per
	// freed descriptor, whose end would come at the next accept.
	ln.quiet = 2 * time.Second
	for i := 0; i < 10; i++ {
		c1, c2 := net.Pipe()
		c2.Close()
		raw.mu.Lock()
		raw.script = append(raw.script, acceptError(syscall.EMFILE))
		raw.conns = append(raw.conns, c1)
		raw.mu.Unlock()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	rec.mu.Lock()
	if len(rec.events) != 1 || rec.events[0].message != "accept failed" {
		t.Fatalf("during the churn: %+v", rec.events)
	}
	rec.mu.Unlock()
	waitFor(t, "the end of the burst", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.events) == 2 })
	if e := rec.events[1]; e.message != "accept recovered" || e.data[1].Value != 10 {
		t.Fatalf("end of the burst: %+v", e)
	}
}

// The delay is capped at 1 s, a close during a wait ends it at once, and
// errors that mean the listener is broken are returned.
func TestKeepAcceptingCapsTheDelayAndStops(t *testing.T) {
	var script []error
	for i := 0; i < 12; i++ {
		script = append(script, acceptError(syscall.EMFILE))
	}
	raw := &scriptedListener{script: script}
	ln := keepAccepting(raw, "proxy", func(string, ...jsconfig.Field) {})
	done := make(chan error, 1)
	go func() { _, err := ln.Accept(); done <- err }()
	waitFor(t, "eleven attempts", func() bool { raw.mu.Lock(); defer raw.mu.Unlock(); return len(raw.at) >= 11 })
	raw.mu.Lock()
	d9, d10 := raw.at[9].Sub(raw.at[8]), raw.at[10].Sub(raw.at[9])
	raw.mu.Unlock()
	// Without the cap they would be 1.28 s and 2.56 s: the 9th alone could
	// not tell (a loaded machine lengthens any gap), the 10th can, with
	// 1.5 s of room.
	if d9 < 900*time.Millisecond || d10 < 900*time.Millisecond || d10 > 2500*time.Millisecond {
		t.Fatalf("the 9th and 10th delays were %v and %v, want the 1 s cap", d9, d10)
	}
	ln.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	// A wait that ran out instead of ending at Close would try the closed
	// listener once more. (A bound on the time Close took, 500 ms of the
	// second left, needed two wake-ups in time: a loaded machine has
	// taken over 1 s for two.)
	raw.mu.Lock()
	after := len(raw.at) - raw.attemptsBeforeClose
	raw.mu.Unlock()
	if after != 0 {
		t.Fatalf("the wait under way ran out instead of ending at Close: %d attempt(s) after it", after)
	}

	broken := keepAccepting(&scriptedListener{script: []error{acceptError(syscall.EINVAL)}}, "proxy", func(string, ...jsconfig.Field) {})
	if _, err := broken.Accept(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("EINVAL: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A listener that breaks for good ends the daemon with an error naming it
// (so a supervisor restarts it) instead of leaving it deaf; a broken
// metrics listener is only logged. (shutdown(2) breaks a TCP listener from
// outside; a unix listener cannot be broken that way without also losing
// its wake-ups, and the control socket's loop goes through the same
// serveListener and fail as the proxy's.)
func TestBrokenListenerEndsTheDaemon(t *testing.T) {
	for _, which := range []string{"proxy", "metrics"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			plan := &jsconfig.Plan{
				Application: "shop",
				Control:     jsconfig.Control{Path: filepath.Join(dir, "rb.sock")},
				Proxy:       jsconfig.Proxy{Host: "127.0.0.1", UpstreamHost: "127.0.0.1", DrainTimeoutMs: 1000, ForceStopTimeoutMs: 1000},
			}
			var log syncLog
			e := New(Options{Plan: plan, Stdout: &log, MetricsAddress: "127.0.0.1:0"})
			served := make(chan error, 1)
			go func() { served <- e.Serve() }()
			t.Cleanup(func() {
				go e.Shutdown(nil)
				<-served
			})
			waitFor(t, "the control socket", func() bool { _, err := os.Stat(plan.Control.Path); return err == nil })
			var ln *net.TCPListener
			e.mu.Lock()
			if which == "proxy" {
				ln = e.proxyLn.(*net.TCPListener)
			} else {
				ln = e.metrics.ln.(*net.TCPListener)
			}
			e.mu.Unlock()
			raw, err := ln.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			// shutdown(2) on a listening socket makes accept fail with
			// EINVAL from then on: the listener is broken for good.
			raw.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) })
			if which == "metrics" {
				waitFor(t, "the metrics listener failed event", func() bool {
					return strings.Contains(log.String(), `{"error":"EINVAL: invalid argument"},"message":"metrics listener failed"`)
				})
				select {
				case err := <-served:
					t.Fatalf("the daemon ended: %v", err)
				default:
				}
				// It still answers on the control socket.
				if c, err := net.Dial("unix", plan.Control.Path); err != nil {
					t.Fatalf("the control socket: %v", err)
				} else {
					c.Close()
				}
				return
			}
			select {
			case err := <-served:
				if err == nil || !strings.Contains(err.Error(), "The "+which+" listener stopped accepting connections") {
					t.Fatalf("Serve returned %v", err)
				}
				t.Log(err)
				served <- err // for the cleanup
			case <-time.After(15 * time.Second):
				t.Fatalf("the daemon did not end; log:\n%s", log.String())
			}
			if !strings.Contains(log.String(), `"message":"listener failed"`) || !strings.Contains(log.String(), `"listener":"`+which+`"`) {
				t.Fatalf("no listener failed event:\n%s", log.String())
			}
			if _, err := os.Lstat(plan.Control.Path); err == nil {
				t.Fatal("the control socket file was left behind")
			}
		})
	}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// closingListener closes ln (the listener wrapping it) while an attempt
// is under way, after inner's Accept returned: Close overtakes it.
type closingListener struct {
	net.Listener
	ln *retryingListener
}

func (l *closingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	l.ln.Close()
	return c, err
}

// An attempt that Close overtook reports the close, not its own failure:
// a temporary error returned then would read as a broken listener.
func TestKeepAcceptingReportsACloseThatOvertookAnAttempt(t *testing.T) {
	inner := &closingListener{Listener: &scriptedListener{script: []error{acceptError(syscall.EMFILE)}}}
	inner.ln = keepAccepting(inner, "proxy", func(string, ...jsconfig.Field) {})
	if _, err := inner.ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept overtaken by Close: %v", err)
	}
}
