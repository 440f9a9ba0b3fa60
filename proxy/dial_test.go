package proxy

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// A dial that fails for lack of descriptors is tried again until one is
// free; other failures (the application is down) return at once.
func TestPatientDialWaitsForDescriptors(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	attempts := 0
	dial := patientDial(func(ctx context.Context, network, addr string) (net.Conn, error) {
		attempts++
		if attempts <= 6 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
		}
		return c1, nil
	})
	began := time.Now()
	c, err := dial(context.Background(), "tcp", "127.0.0.1:1")
	if err != nil || c != c1 || attempts != 7 {
		t.Fatalf("dial: %v %v after %d attempts", c, err, attempts)
	}
	if took := time.Since(began); took < (5+10+20+40+80+100)*time.Millisecond-time.Millisecond {
		t.Fatalf("6 retries took only %v", took)
	}

	refused := &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	attempts = 0
	dial = patientDial(func(context.Context, string, string) (net.Conn, error) { attempts++; return nil, refused })
	if _, err := dial(context.Background(), "tcp", "127.0.0.1:1"); !errors.Is(err, syscall.ECONNREFUSED) || attempts != 1 {
		t.Fatalf("refused: %v after %d attempts", err, attempts)
	}

	// A client that goes away ends the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	dial = patientDial(func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.ENFILE)}
	})
	began = time.Now()
	if _, err := dial(ctx, "tcp", "127.0.0.1:1"); !errors.Is(err, syscall.ENFILE) || time.Since(began) > 2*time.Second {
		t.Fatalf("cancelled: %v after %v", err, time.Since(began))
	}
}
