package runtime

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxLineBytes is the longest output line kept as one entry; longer lines
// are split into pieces of this size.
const MaxLineBytes = 64 * 1024

// OutputEntry is one captured line of a process's stdout or stderr.
type OutputEntry struct {
	At     time.Time
	Line   string
	Stream string // "stdout" or "stderr"
	// Seq orders every captured line of every process: a follower that
	// replays the rings up to OutputSeq() and takes later lines live gets
	// each line exactly once.
	Seq uint64
}

// outputSeq numbers captured lines across all processes.
var outputSeq atomic.Uint64

// OutputSeq is the number of the newest captured line so far.
func OutputSeq() uint64 { return outputSeq.Load() }

// outputRing keeps the most recent entries, up to a capacity that follows
// the process's current outputLines setting.
type outputRing struct {
	mu      sync.Mutex
	entries []OutputEntry // oldest first
	limit   int
}

func (r *outputRing) setLimit(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limit = max(n, 1)
	r.trim()
}

// add numbers e and keeps it; numbering and keeping happen under one lock,
// so a snapshot holds every line up to any number it has seen.
func (r *outputRing) add(e OutputEntry) OutputEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Seq = outputSeq.Add(1)
	r.entries = append(r.entries, e)
	r.trim()
	return e
}

// trim keeps the newest limit entries; the backing array is reused so the
// ring never grows past twice its limit.
func (r *outputRing) trim() {
	if extra := len(r.entries) - r.limit; extra > 0 {
		if cap(r.entries) > 2*r.limit {
			r.entries = append(make([]OutputEntry, 0, r.limit+1), r.entries[extra:]...)
		} else {
			n := copy(r.entries, r.entries[extra:])
			r.entries = r.entries[:n]
		}
	}
}

func (r *outputRing) snapshot() []OutputEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]OutputEntry(nil), r.entries...)
}

// captureLines reads a stream until EOF and emits one entry per line: lines
// end at "\n" (a preceding "\r" is dropped), empty lines are skipped, a line
// longer than MaxLineBytes is emitted in MaxLineBytes pieces, and a final
// line without a newline is emitted at EOF. Memory stays bounded by
// MaxLineBytes whatever the process writes.
func captureLines(r io.Reader, stream string, now func() time.Time, emit func(OutputEntry)) {
	buf := make([]byte, 0, 4096)
	chunk := make([]byte, 32*1024)
	flush := func(line []byte) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return
		}
		emit(OutputEntry{At: now(), Line: strings.ToValidUTF8(string(line), "\uFFFD"), Stream: stream})
	}
	for {
		n, err := r.Read(chunk)
		data := chunk[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				buf = append(buf, data...)
				data = nil
			} else {
				buf = append(buf, data[:i]...)
				data = data[i+1:]
				flush(buf)
				buf = buf[:0]
			}
			for len(buf) >= MaxLineBytes {
				flush(buf[:MaxLineBytes])
				buf = append(buf[:0], buf[MaxLineBytes:]...)
			}
		}
		if err != nil {
			flush(buf)
			return
		}
	}
}
