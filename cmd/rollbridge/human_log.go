package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// eventMessageWidth aligns the fields of event lines: the messages of
// deploys, processes and listeners fit ("process restart requested").
const eventMessageWidth = 25

// eventLine renders one event for a person: the time in zone (with the
// date when withDate), the message, and the data as key=value in the
// daemon's key order:
//
//	08:12:03  deploy starting           releaseId=r2 releasePath=/srv/app/r2 revision=abc
func eventLine(e eventEntry, pal palette, withDate bool, zone *time.Location) string {
	var b strings.Builder
	layout := "15:04:05"
	if withDate {
		layout = "2006-01-02 15:04:05"
	}
	if at, ok := parseISO(e.At); ok {
		b.WriteString(pal.dim(at.In(zone).Format(layout)))
	} else {
		b.WriteString(termText(e.At))
	}
	b.WriteString("  ")
	fields := dataFields(e.Data)
	msg := termText(e.Message)
	if len(fields) > 0 && len(msg) < eventMessageWidth {
		msg += strings.Repeat(" ", eventMessageWidth-len(msg))
	}
	b.WriteString(eventColour(pal, e.Message, msg))
	if len(fields) > 0 {
		b.WriteString("  " + strings.Join(fields, " "))
	}
	return strings.TrimRight(b.String(), " ")
}

// eventColour marks failures red and warnings yellow; the message says
// the same in words.
func eventColour(pal palette, message, shown string) string {
	switch {
	case strings.Contains(message, "failed"), strings.Contains(message, "crashed"), message == "restart limit reached",
		message == "memory limit exceeded", strings.HasPrefix(message, "state file"):
		return pal.red(shown)
	case strings.Contains(message, "warning"), strings.Contains(message, "timed out"), strings.HasPrefix(message, "orphaned"),
		message == "signal ignored":
		return pal.yellow(shown)
	}
	return shown
}

// dataFields lists an event's data as key=value in its key order.
// Strings are bare unless they are empty or hold a space, a quote, "=",
// a backslash or anything termText escapes, and quoted with escapes then;
// other values are compact JSON, such runes written as \u escapes. "id"
// repeats "processId" in process events and is left out when it does.
func dataFields(data json.RawMessage) []string {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out []string
	var processID string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return out
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return out
		}
		var s string
		isString := !bytes.Equal(v, []byte("null")) && json.Unmarshal(v, &s) == nil
		if key == "processId" && isString {
			processID = s
		}
		if key == "id" && isString && s == processID {
			continue
		}
		var shown string
		brief, isBrief := "", false
		if key == "processes" {
			// A failed deploy's report: ~1 KB of JSON, told in words.
			brief, isBrief = processesBrief(v)
		}
		switch {
		case isBrief:
			shown = brief
		case isString && s != "" && !strings.ContainsAny(s, " \"=\\") && printable(s):
			shown = s
		case isString:
			shown = strconv.Quote(s)
		default:
			var c bytes.Buffer
			if json.Compact(&c, v) != nil {
				continue
			}
			shown = termJSON(c.String())
		}
		out = append(out, termText(key)+"="+shown)
	}
	return out
}

// readableLog turns the daemon's JSON log lines into eventLine lines for
// a person watching a foreground daemon on a terminal. Anything that is
// not an event line (console output of the config's first load) passes
// through as it is.
type readableLog struct {
	out  io.Writer
	pal  palette
	zone *time.Location // where the times are shown: time.Local

	mu      sync.Mutex
	partial []byte
}

func (w *readableLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := w.partial[:i+1]
		var e eventEntry
		if json.Unmarshal(line, &e) == nil && e.Message != "" && e.At != "" {
			line = []byte(eventLine(e, w.pal, false, w.zone) + "\n")
		}
		w.partial = w.partial[i+1:]
		if _, err := w.out.Write(line); err != nil {
			return len(p), err
		}
	}
	if len(w.partial) == 0 {
		w.partial = nil
	}
	return len(p), nil
}

// eventsText renders the events command's list for a person, with times
// in now's zone and the date on the events of other days.
func eventsText(events []eventEntry, pal palette, now time.Time) string {
	var b strings.Builder
	for _, e := range events {
		at, ok := parseISO(e.At)
		sameDay := ok && at.In(now.Location()).Format("2006-01-02") == now.Format("2006-01-02")
		b.WriteString(eventLine(e, pal, !sameDay, now.Location()) + "\n")
	}
	return b.String()
}
