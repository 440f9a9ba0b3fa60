package engine

import (
	"errors"
	"sync"
	"time"
)

// ErrShuttingDown is the answer to a mutating command once a shutdown has
// begun (docs/cli.md#one-operation-at-a-time).
var ErrShuttingDown = errors.New("Rollbridge is shutting down")

// operation describes one holder of, or waiter for, the operation lock,
// as the operations command shows it (docs/cli.md#control-protocol).
type operation struct {
	command   string // deploy, rollback, stop, restart; the daemon's own boot deploy is "deploy" too
	releaseID string // "" until known
	clientPID int    // the requesting CLI's pid; 0 unknown
	since     time.Time
}

// opLock serialises deploy, rollback, stop and restart in arrival order.
// Closing it fails every waiter and every later acquire with
// ErrShuttingDown.
type opLock struct {
	mu      sync.Mutex
	held    bool
	running *operation // the holder, when described
	queue   []waiter
	closed  bool
}

type waiter struct {
	ch chan error
	op *operation
}

// acquireAs waits for the lock on behalf of op (nil: not described).
func (l *opLock) acquireAs(op *operation) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrShuttingDown
	}
	if !l.held {
		l.held = true
		l.running = started(op)
		l.mu.Unlock()
		return nil
	}
	if op != nil {
		op.since = time.Now() // queued since
	}
	ch := make(chan error, 1)
	l.queue = append(l.queue, waiter{ch: ch, op: op})
	l.mu.Unlock()
	return <-ch
}

// started stamps op's start: from here on since is when it began to run.
func started(op *operation) *operation {
	if op != nil {
		op.since = time.Now()
	}
	return op
}

func (l *opLock) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) > 0 {
		next := l.queue[0]
		l.queue = l.queue[1:]
		l.running = started(next.op)
		next.ch <- nil // ownership passes straight to the next in line
		return
	}
	l.held = false
	l.running = nil
}

func (l *opLock) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, w := range l.queue {
		w.ch <- ErrShuttingDown
	}
	l.queue = nil
}

// setRelease records the release the running operation works on, once
// it is known (a deploy picks its id, a rollback its target).
func (l *opLock) setRelease(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running != nil {
		l.running.releaseID = id
	}
}

// snapshot returns copies of the running operation (nil when the lock is
// free or its holder is not described) and of the waiters, in order.
func (l *opLock) snapshot() (running *operation, held bool, queued []operation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running != nil {
		r := *l.running
		running = &r
	}
	for _, w := range l.queue {
		if w.op != nil {
			queued = append(queued, *w.op)
		} else {
			queued = append(queued, operation{})
		}
	}
	return running, l.held, queued
}
