package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/rollbridge/rollbridge/engine/control"
)

// maxDetailLineRunes is where a line of application output in a failed
// deploy's detail is cut (docs/cli.md#deploy).
const maxDetailLineRunes = 200

// failedProcess is one entry of a failed deploy's "processes" field.
type failedProcess struct {
	ID         string `json:"id"`
	Exits      int    `json:"exits"`
	ExitCauses []struct {
		Code   *int    `json:"code"`
		Signal *string `json:"signal"`
		Count  int     `json:"count"`
	} `json:"exitCauses"`
	Restarts            int  `json:"restarts"`
	RestartLimitReached bool `json:"restartLimitReached"`
	Failing             bool `json:"failing"`
	LastOutput          []struct {
		Line string `json:"line"`
	} `json:"lastOutput"`
}

// failureDetail is what the CLI prints below "Error: <message>": for a
// refused config reload, one indented line per change ("changes"); for a
// failed deploy or rollback, one line per process of the new release that
// exited, and one for the process whose health check failed, with its
// last output lines. "" when the daemon sent no such detail (a Node.js
// daemon, or another error).
func failureDetail(err error) string {
	var de *control.DaemonError
	if !errors.As(err, &de) {
		return ""
	}
	return reloadChanges(de) + processDetail(de)
}

// reloadChanges are a refused reload's changes, one indented line each.
func reloadChanges(de *control.DaemonError) string {
	var changes []string
	if de.Fields["changes"] == nil || json.Unmarshal(de.Fields["changes"], &changes) != nil {
		return ""
	}
	var b strings.Builder
	for _, c := range changes {
		b.WriteString("  " + safeText(c) + "\n")
	}
	return b.String()
}

// processDetail is a failed deploy's lines about its processes.
func processDetail(de *control.DaemonError) string {
	if de.Fields["processes"] == nil {
		return ""
	}
	var procs []failedProcess
	if json.Unmarshal(de.Fields["processes"], &procs) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range procs {
		if p.Exits == 0 && !p.Failing {
			continue
		}
		b.WriteString(safeText(p.ID))
		if p.Exits == 0 {
			b.WriteString(" did not exit")
		} else {
			fmt.Fprintf(&b, " exited %s (%s)", times(p.Exits), exitCauses(p))
		}
		if p.Restarts > 0 {
			fmt.Fprintf(&b, ", restarted %s", times(p.Restarts))
		}
		if p.RestartLimitReached {
			b.WriteString(", restart limit reached")
		}
		if p.Failing {
			lines := outputLines(p)
			switch len(lines) {
			case 0:
				b.WriteString("; no output")
			case 1:
				b.WriteString("; last output: " + lines[0])
			default:
				b.WriteString("; last output:")
				for _, l := range lines {
					b.WriteString("\n    " + l)
				}
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// outputLines are p's last output lines made safe to print, a run of
// equal lines (a process that printed the same error at each start)
// shown once with "(×n)".
func outputLines(p failedProcess) []string {
	var out []string
	for i := 0; i < len(p.LastOutput); {
		j := i + 1
		for j < len(p.LastOutput) && p.LastOutput[j].Line == p.LastOutput[i].Line {
			j++
		}
		line := safeText(p.LastOutput[i].Line)
		if j-i > 1 {
			line += fmt.Sprintf(" (×%d)", j-i)
		}
		out = append(out, line)
		i = j
	}
	return out
}

func times(n int) string {
	if n == 1 {
		return "1 time"
	}
	return fmt.Sprintf("%d times", n)
}

// exitCauses is "code 3", or "9 with code 3, 2 by signal SIGSEGV" when
// the process ended in more than one way.
func exitCauses(p failedProcess) string {
	var parts []string
	for _, c := range p.ExitCauses {
		what := "?"
		switch {
		case c.Signal != nil:
			what = "signal " + safeText(*c.Signal)
		case c.Code != nil:
			what = fmt.Sprintf("code %d", *c.Code)
		}
		if len(p.ExitCauses) > 1 {
			if c.Signal != nil {
				what = fmt.Sprintf("%d by %s", c.Count, what)
			} else {
				what = fmt.Sprintf("%d with %s", c.Count, what)
			}
		}
		parts = append(parts, what)
	}
	return strings.Join(parts, ", ")
}

// safeText makes application output safe to print: control characters
// (which could move the cursor, recolour or retitle a terminal) and
// bidirectional overrides are shown as \x1b / \u202e escapes, and a line
// longer than maxDetailLineRunes is cut, ending with "…".
func safeText(s string) string {
	var b strings.Builder
	n := 0
	for i, r := range s {
		if n == maxDetailLineRunes {
			if i < len(s) {
				b.WriteString("…")
			}
			break
		}
		n++
		switch {
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
