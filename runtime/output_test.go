package runtime

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func collect(r io.Reader) []string {
	var lines []string
	captureLines(r, "stdout", time.Now, func(e OutputEntry) { lines = append(lines, e.Line) })
	return lines
}

func TestCaptureLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a\r\n\nb\nc", []string{"a", "b", "c"}},
		{"\n\n\n", nil},
		{"tail without newline", []string{"tail without newline"}},
		{"bad \xff byte\n", []string{"bad \uFFFD byte"}},
	} {
		if got := collect(strings.NewReader(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A line delivered in many small reads is still one entry.
func TestCaptureJoinsChunks(t *testing.T) {
	r, w := io.Pipe()
	go func() {
		for _, c := range []string{"hel", "lo wo", "rld\nsecond", " line\n"} {
			w.Write([]byte(c))
		}
		w.Close()
	}()
	if got := collect(r); !reflect.DeepEqual(got, []string{"hello world", "second line"}) {
		t.Fatalf("got %q", got)
	}
}

// A huge line without a newline is emitted in 64 KiB pieces; the capture
// never holds more than one piece.
func TestCaptureSplitsLongLines(t *testing.T) {
	const size = 10*MaxLineBytes + 123
	var sizes []int
	captureLines(io.LimitReader(repeatReader('x'), size), "stdout", time.Now, func(e OutputEntry) { sizes = append(sizes, len(e.Line)) })
	if len(sizes) != 11 || sizes[0] != MaxLineBytes || sizes[10] != 123 {
		t.Fatalf("piece sizes %v", sizes)
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestOutputRingKeepsNewest(t *testing.T) {
	var ring outputRing
	ring.setLimit(3)
	for i := range 1000 {
		ring.add(OutputEntry{Line: itoa(i)})
	}
	got := ring.snapshot()
	if len(got) != 3 || got[0].Line != "997" || got[2].Line != "999" || cap(ring.entries) > 7 {
		t.Fatalf("ring %v cap %d", got, cap(ring.entries))
	}
	ring.setLimit(2)
	if got := ring.snapshot(); len(got) != 2 || got[0].Line != "998" {
		t.Fatalf("after shrinking: %v", got)
	}
}

func TestProcessOutputCapture(t *testing.T) {
	spec := baseSpec(t, "exec "+fixture+" -lines 100 -partial end")
	spec.OutputLines = 5
	var seen []OutputEntry
	done := make(chan struct{})
	p := New(spec, Options{OnOutput: func(e OutputEntry) {
		seen = append(seen, e)
		if e.Line == "end" {
			close(done)
		}
	}})
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("output not captured")
	}
	waitFor(t, "the exit", 5*time.Second, func() bool { return p.State() == StateFailed })
	logs := p.Status().Logs
	var lines []string
	for _, l := range logs {
		lines = append(lines, l.Line)
	}
	want := []string{"96 xxxxxxxxxx", "97 xxxxxxxxxx", "98 xxxxxxxxxx", "99 xxxxxxxxxx", "end"}
	if !reflect.DeepEqual(lines, want) || len(seen) != 101 || logs[0].Stream != "stdout" {
		t.Fatalf("logs %v (hook saw %d)", lines, len(seen))
	}
	p.Stop()
}
