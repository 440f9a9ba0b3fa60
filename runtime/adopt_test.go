package runtime

import (
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pipesRecorder records OnPipes calls; it closes the duplicates it gets.
type pipesRecorder struct {
	mu    sync.Mutex
	calls []OutputPipes // files set to nil once closed
	// read, when set, is called with the duplicates before they are closed.
	read func(OutputPipes)
}

func (r *pipesRecorder) add(op OutputPipes) {
	if r.read != nil && !op.Closed {
		r.read(op)
	}
	for _, f := range []*os.File{op.Stdout, op.Stderr} {
		if f != nil {
			f.Close()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, op)
}

func (r *pipesRecorder) get() []OutputPipes {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]OutputPipes(nil), r.calls...)
}

// count is the number of calls for pid with Closed as given.
func (r *pipesRecorder) count(pid int, closed bool) int {
	n := 0
	for _, c := range r.get() {
		if c.PID == pid && c.Closed == closed {
			n++
		}
	}
	return n
}

func hasLine(logs []OutputEntry, stream, line string) bool {
	for _, l := range logs {
		if l.Stream == stream && l.Line == line {
			return true
		}
	}
	return false
}

// OnPipes gets working duplicates of the output pipes of every spawn
// before the child runs and before OnSpawn (bytes written into the
// child's stdout and stderr are read from them), and one Closed call
// once that spawn's capture ended; closing the duplicates does not
// disturb the capture.
func TestOnPipesSharesTheOutputPipes(t *testing.T) {
	var mu sync.Mutex
	var order []string
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	var readErr error
	pipes := &pipesRecorder{read: func(op OutputPipes) {
		note("pipes " + itoa(op.PID))
		for _, s := range []struct {
			fd  string
			dup *os.File
		}{{"1", op.Stdout}, {"2", op.Stderr}} {
			// The child is held at its gate: nothing reads the pipe yet.
			w, err := os.OpenFile("/proc/"+itoa(op.PID)+"/fd/"+s.fd, os.O_WRONLY, 0)
			if err != nil {
				readErr = err
				return
			}
			_, err = io.WriteString(w, "probe "+s.fd+"\n")
			w.Close()
			buf := make([]byte, 64)
			n, rerr := s.dup.Read(buf)
			if err != nil || rerr != nil || string(buf[:n]) != "probe "+s.fd+"\n" {
				readErr = errors.New("fd " + s.fd + ": read " + string(buf[:n]) + " from the duplicate")
			}
		}
	}}
	spec := baseSpec(t, "echo hi; echo ho >&2; exec "+fixture+" -sleep")
	rec := &recorder{}
	p := New(spec, Options{OnEvent: rec.add, OnPipes: pipes.add, OnSpawn: func(s Spawn) { note("spawn " + itoa(s.PID)) }})
	t.Cleanup(func() {
		if pid := p.PID(); pid > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	})

	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	waitFor(t, "the child's own output", 5*time.Second, func() bool {
		logs := p.Status().Logs
		return hasLine(logs, "stdout", "hi") && hasLine(logs, "stderr", "ho")
	})
	if readErr != nil {
		t.Fatal(readErr)
	}
	for _, l := range p.Status().Logs {
		if strings.HasPrefix(l.Line, "probe") {
			t.Fatalf("the probe was read from the duplicate, not captured: %+v", l)
		}
	}
	p.Stop()
	waitFor(t, "the Closed call", 5*time.Second, func() bool { return pipes.count(pid, true) == 1 })
	got := pipes.get()
	if len(got) != 2 || got[0].PID != pid || got[0].StartTime == 0 || got[0].Stdout == nil || got[0].Stderr == nil || got[0].Closed ||
		!reflect.DeepEqual(got[1], OutputPipes{PID: pid, StartTime: got[0].StartTime, Closed: true}) {
		t.Fatalf("OnPipes calls %+v", got)
	}
	if want := []string{"pipes " + itoa(pid), "spawn " + itoa(pid)}; !reflect.DeepEqual(order, want) {
		t.Fatalf("call order %v, want %v", order, want)
	}

	// A held spawn shares its pipes before it is released, and also a
	// dropped one reports their end.
	for _, run := range []bool{true, false} {
		started := rec.count("process started")
		release, err := p.StartHeld(ReasonDeploy, nil)
		if err != nil {
			t.Fatal(err)
		}
		held := p.PID()
		if pipes.count(held, false) != 1 || rec.count("process started") != started {
			t.Fatalf("held spawn (run %v): pipes %+v, events %v", run, pipes.get(), rec.messages())
		}
		release(run)
		p.Stop()
		waitFor(t, "the Closed call of the held spawn", 5*time.Second, func() bool { return pipes.count(held, true) == 1 })
	}
	if readErr != nil {
		t.Fatal(readErr)
	}
}
