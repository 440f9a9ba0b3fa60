package proxy

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// dialRetryMax caps the wait between two attempts of a dial that failed
// for lack of descriptors or memory, dialPatience the whole wait.
const (
	dialRetryMax = 100 * time.Millisecond
	dialPatience = 10 * time.Second
)

// patientDial dials like dial, but a dial that fails because the daemon
// is out of file descriptors, socket buffers or memory (EMFILE, ENFILE,
// ENOBUFS, ENOMEM: nothing reached the application) is tried again, after
// 5 ms doubling up to 100 ms, for up to dialPatience or until ctx ends.
// While a flood of client connections uses up every descriptor, the
// requests on connections already open then wait for one to be freed
// instead of failing with 502 at once.
func patientDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		delay := 5 * time.Millisecond
		giveUp := time.Now().Add(dialPatience)
		for {
			c, err := dial(ctx, network, addr)
			if err == nil || !outOfResources(err) || time.Now().After(giveUp) {
				return c, err
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, err
			}
			delay = min(2*delay, dialRetryMax)
		}
	}
}

func outOfResources(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
