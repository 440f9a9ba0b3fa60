package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
)

// streamEntry is one line of a follow stream (docs/cli.md#the-follow-command).
type streamEntry struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Source  string          `json:"source"`
	At      string          `json:"at"`
	Line    string          `json:"line"`
	Stream  string          `json:"stream"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
	Count   int64           `json:"count"`
}

// follower prints a follow stream: the replay once it is complete, then
// every entry as it arrives.
type follower interface {
	replay(entries []streamEntry)
	live(e streamEntry)
	dropped(n int64)
}

// follow sends a follow request and feeds the stream to f until the
// daemon ends it or the command is interrupted (SIGINT, SIGTERM), which
// ends it cleanly.
func follow(ep control.Endpoint, request []byte, f follower) error {
	path := ep.Path
	conn, err := control.Dial(ep)
	if err != nil {
		return err
	}
	defer conn.Close()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-signals:
			conn.Close() // ends the read below: a clean exit
		case <-stopped:
		}
	}()
	conn.SetReadDeadline(time.Now().Add(control.ReadTimeout))
	if _, err := conn.Write(append(append([]byte(nil), request...), '\n')); err != nil {
		return fmt.Errorf("Rollbridge daemon at %s closed the connection without a response", path)
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	if _, err := control.ReadResponse(r, path); err != nil {
		var de *control.DaemonError
		if errors.As(err, &de) && de.Message == "Unknown command: follow" {
			return errors.New("this rollbridge daemon does not support --follow")
		}
		return err
	}
	conn.SetReadDeadline(time.Time{})
	var replay []streamEntry
	live := false
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if !live {
				f.replay(replay) // the daemon ended the stream early
			}
			return nil
		}
		var e streamEntry
		if json.Unmarshal(bytes.TrimSpace(line), &e) != nil {
			continue
		}
		switch {
		case e.Type == "dropped":
			f.dropped(e.Count)
		case e.Type == "live":
			live = true
			f.replay(replay)
			replay = nil
		case !live:
			replay = append(replay, e)
		default:
			f.live(e)
		}
	}
}

// logPrinter prints the logs stream like `logs`.
type logPrinter struct {
	out, errOut io.Writer
	asJSON      bool
	process     string
	filtered    bool
	lastID      string
	lastSource  string
	printed     bool
	// readable: stdout is a terminal, so application output and ids are
	// shown by the terminal rule (termText); piped they stay as they are.
	readable bool
}

func sourceLabel(e streamEntry) string {
	if e.Source == "service" || e.Source == "singleton" {
		return e.Source
	}
	return "release " + e.Source
}

func (p *logPrinter) replay(entries []streamEntry) {
	if len(entries) == 0 {
		if p.asJSON {
			return
		}
		if p.filtered {
			fmt.Fprintf(p.out, "No process found with id \"%s\".\n", p.process)
		} else {
			fmt.Fprintln(p.out, "No managed processes.")
		}
		p.printed = true
		return
	}
	if p.asJSON {
		// One source object per line, consecutive lines of a process joined.
		for i := 0; i < len(entries); {
			j := i
			var logs []map[string]string
			for j < len(entries) && entries[j].ID == entries[i].ID && entries[j].Source == entries[i].Source {
				logs = append(logs, map[string]string{"at": entries[j].At, "line": entries[j].Line, "stream": entries[j].Stream})
				j++
			}
			p.writeJSONSource(entries[i], logs)
			i = j
		}
		return
	}
	for _, e := range entries {
		p.live(e)
	}
}

func (p *logPrinter) writeJSONSource(e streamEntry, logs []map[string]string) {
	type entry struct {
		At     string `json:"at"`
		Line   string `json:"line"`
		Stream string `json:"stream"`
	}
	list := make([]entry, len(logs))
	for i, l := range logs {
		list[i] = entry{l["at"], l["line"], l["stream"]}
	}
	obj := struct {
		ID     string  `json:"id"`
		Logs   []entry `json:"logs"`
		Source string  `json:"source"`
	}{e.ID, list, sourceLabel(e)}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(obj)
	p.out.Write(b.Bytes())
}

func (p *logPrinter) live(e streamEntry) {
	if p.asJSON {
		p.writeJSONSource(e, []map[string]string{{"at": e.At, "line": e.Line, "stream": e.Stream}})
		return
	}
	var b bytes.Buffer
	if e.ID != p.lastID || e.Source != p.lastSource {
		if p.printed {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "== %s [%s] ==\n", showText(p.readable, e.ID), showText(p.readable, sourceLabel(e)))
		p.lastID, p.lastSource = e.ID, e.Source
	}
	fmt.Fprintf(&b, "  %s [%s] %s\n", showText(p.readable, e.At), showText(p.readable, e.Stream), showText(p.readable, e.Line))
	p.printed = true
	p.out.Write(b.Bytes())
}

func (p *logPrinter) dropped(n int64) {
	fmt.Fprintf(p.errOut, "Warning: %d log entries were dropped because the reader fell behind.\n", n)
}

// eventPrinter prints the events stream like `events`.
type eventPrinter struct {
	out, errOut io.Writer
	asJSON      bool
	// readable writes the lines for a person (stdout is a terminal).
	readable bool
}

func (p *eventPrinter) replay(entries []streamEntry) {
	if len(entries) == 0 && !p.asJSON {
		fmt.Fprintln(p.out, "No events recorded yet.")
		return
	}
	for _, e := range entries {
		p.live(e)
	}
}

func (p *eventPrinter) live(e streamEntry) {
	var b bytes.Buffer
	if p.asJSON {
		b.WriteString(`{"at":`)
		at, _ := json.Marshal(e.At)
		b.Write(at)
		b.WriteString(`,"data":`)
		b.Write(rawOrEmpty(e.Data))
		b.WriteString(`,"message":`)
		msg, _ := marshalNoEscape(e.Message)
		b.Write(msg)
		b.WriteString("}\n")
	} else if p.readable {
		now := time.Now()
		b.WriteString(eventsText([]eventEntry{{At: e.At, Data: e.Data, Message: e.Message}}, newPalette(p.out), now))
	} else {
		fmt.Fprintf(&b, "%s  %s", e.At, e.Message)
		var compact bytes.Buffer
		if json.Compact(&compact, e.Data) == nil && compact.Len() > 2 {
			b.WriteByte(' ')
			b.Write(compact.Bytes())
		}
		b.WriteByte('\n')
	}
	p.out.Write(b.Bytes())
}

func (p *eventPrinter) dropped(n int64) {
	fmt.Fprintf(p.errOut, "Warning: %d events were dropped because the reader fell behind.\n", n)
}

func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
