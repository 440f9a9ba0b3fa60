package runtime

import (
	"bytes"
	"encoding/json"
	"time"
)

// ISOTime formats t the way the reference does: UTC, milliseconds, "Z".
func ISOTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Status is a consistent snapshot of a process for `status`
// (docs/processes.md#9-what-status-shows). Optional keys are omitted, as the
// Node.js rollbridge omits undefined ones.
type Status struct {
	AdoptedAt           *time.Time // when this daemon adopted the command an earlier one spawned; status only
	Children            []Child
	Command             string
	Cwd                 string
	Exited              bool // ExitCode and ExitSignal are reported
	ExitCode            *int
	ExitSignal          *string
	ID                  string
	LastMemoryRestartAt *time.Time
	LastStartReason     string
	Logs                []OutputEntry
	MemoryRestarts      int
	OutputCaptured      *bool // false: adopted without (one of) its output pipes; nil otherwise; status only
	PID                 int   // 0: omitted
	Restarts            int
	RSSBytes            *int64
	StartedAt           *time.Time
	StartTime           uint64 // /proc start time of PID; only in the state file
	State               State
	UptimeMs            *int64
}

// Status returns the process's status now.
func (p *Process) Status() Status {
	p.mu.Lock()
	s := Status{
		Children:        append([]Child(nil), p.children...),
		Command:         p.spec.shownCommand(),
		Cwd:             p.spec.Cwd,
		Exited:          p.exited,
		ExitCode:        p.exitCode,
		ExitSignal:      p.exitSignal,
		ID:              p.spec.ID,
		LastStartReason: p.lastStartReason,
		MemoryRestarts:  p.memoryRestarts,
		PID:             p.pid,
		StartTime:       p.startTicks,
		Restarts:        p.restarts,
		RSSBytes:        p.rssBytes,
		State:           p.state,
	}
	limit := p.spec.OutputLines
	if !p.adoptedAt.IsZero() {
		t := p.adoptedAt
		s.AdoptedAt = &t
	}
	if p.outputLost {
		captured := false
		s.OutputCaptured = &captured
	}
	if !p.lastMemRestart.IsZero() {
		t := p.lastMemRestart
		s.LastMemoryRestartAt = &t
	}
	if !p.startedAt.IsZero() {
		t := p.startedAt
		s.StartedAt = &t
		if p.state == StateRunning {
			up := p.clock.Now().Sub(t).Milliseconds()
			s.UptimeMs = &up
		}
	}
	p.mu.Unlock()
	logs := p.output.snapshot()
	if len(logs) > limit {
		logs = logs[len(logs)-limit:]
	}
	s.Logs = logs
	return s
}

// MarshalJSON writes the status with the reference's key order.
func (s Status) MarshalJSON() ([]byte, error) { return s.marshal(false) }

// MarshalStateJSON writes the entry of the state file (docs/cli.md#the-state-file):
// no command, working directory, children or output, and with the
// process group and start time that tell a live orphan from a recycled
// pid.
func (s Status) MarshalStateJSON() ([]byte, error) { return s.marshal(true) }

func (s Status) marshal(state bool) ([]byte, error) {
	var b bytes.Buffer
	w := jsonWriter{buf: &b}
	b.WriteByte('{')
	if !state && s.AdoptedAt != nil {
		w.field("adoptedAt", ISOTime(*s.AdoptedAt))
	}
	if !state {
		children := s.Children
		if children == nil {
			children = []Child{}
		}
		w.field("children", children)
		w.field("command", s.Command)
		w.field("cwd", s.Cwd)
	}
	if s.Exited {
		w.field("exitCode", s.ExitCode)
		w.field("exitSignal", s.ExitSignal)
	}
	w.field("id", s.ID)
	if s.LastMemoryRestartAt != nil {
		w.field("lastMemoryRestartAt", ISOTime(*s.LastMemoryRestartAt))
	}
	if s.LastStartReason != "" {
		w.field("lastStartReason", s.LastStartReason)
	}
	if !state {
		logs := s.Logs
		if logs == nil {
			logs = []OutputEntry{}
		}
		w.field("logs", logs)
	}
	w.field("memoryRestarts", s.MemoryRestarts)
	if !state && s.OutputCaptured != nil {
		w.field("outputCaptured", *s.OutputCaptured)
	}
	if s.PID != 0 {
		if state {
			w.field("pgid", s.PID) // every process leads its own group
		}
		w.field("pid", s.PID)
	}
	w.field("restarts", s.Restarts)
	if s.RSSBytes != nil {
		w.field("rssBytes", *s.RSSBytes)
	}
	if state && s.PID != 0 && s.StartTime != 0 {
		w.field("startTime", s.StartTime)
	}
	if s.StartedAt != nil {
		w.field("startedAt", ISOTime(*s.StartedAt))
	}
	w.field("state", s.State)
	if s.UptimeMs != nil {
		w.field("uptimeMs", *s.UptimeMs)
	}
	b.WriteByte('}')
	return b.Bytes(), w.err
}

// MarshalJSON writes {command, pid, rssBytes?}.
func (c Child) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	w := jsonWriter{buf: &b}
	b.WriteByte('{')
	w.field("command", c.Command)
	w.field("pid", c.PID)
	if c.RSSBytes != nil {
		w.field("rssBytes", *c.RSSBytes)
	}
	b.WriteByte('}')
	return b.Bytes(), w.err
}

// MarshalJSON writes {at, line, stream}.
func (e OutputEntry) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	w := jsonWriter{buf: &b}
	b.WriteByte('{')
	w.field("at", ISOTime(e.At))
	w.field("line", e.Line)
	w.field("stream", e.Stream)
	b.WriteByte('}')
	return b.Bytes(), w.err
}

// jsonWriter appends "key":value pairs without HTML escaping.
type jsonWriter struct {
	buf *bytes.Buffer
	n   int
	err error
}

func (w *jsonWriter) field(key string, v any) {
	if w.err != nil {
		return
	}
	if w.n > 0 {
		w.buf.WriteByte(',')
	}
	w.n++
	enc := json.NewEncoder(w.buf)
	enc.SetEscapeHTML(false)
	if w.err = enc.Encode(key); w.err != nil {
		return
	}
	w.buf.Truncate(w.buf.Len() - 1) // Encode's newline
	w.buf.WriteByte(':')
	if w.err = enc.Encode(v); w.err == nil {
		w.buf.Truncate(w.buf.Len() - 1)
	}
}
