package engine

import (
	"errors"
	"sync"
)

// ErrShuttingDown is the answer to a mutating command once a shutdown has
// begun (docs/cli.md#one-operation-at-a-time).
var ErrShuttingDown = errors.New("Rollbridge is shutting down")

// opLock serialises deploy, rollback, stop and restart in arrival order.
// Closing it fails every waiter and every later acquire with
// ErrShuttingDown.
type opLock struct {
	mu     sync.Mutex
	held   bool
	queue  []chan error
	closed bool
}

func (l *opLock) acquire() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrShuttingDown
	}
	if !l.held {
		l.held = true
		l.mu.Unlock()
		return nil
	}
	ch := make(chan error, 1)
	l.queue = append(l.queue, ch)
	l.mu.Unlock()
	return <-ch
}

func (l *opLock) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) > 0 {
		next := l.queue[0]
		l.queue = l.queue[1:]
		next <- nil // ownership passes straight to the next in line
		return
	}
	l.held = false
}

func (l *opLock) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, ch := range l.queue {
		ch <- ErrShuttingDown
	}
	l.queue = nil
}
