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
	return reloadChanges(de) + processDetail(de) + beforeSwitchDetail(de)
}

// beforeSwitchDetail is a failed --before-switch command's lines: how it
// ended and its last output lines, indented (docs/cli.md#deploy---hold-traffic).
func beforeSwitchDetail(de *control.DaemonError) string {
	var run struct {
		ExitCode   *int    `json:"exitCode"`
		Signal     *string `json:"signal"`
		DurationMs int64   `json:"durationMs"`
		TimedOut   bool    `json:"timedOut"`
		Output     []string
	}
	if de.Fields["beforeSwitch"] == nil || json.Unmarshal(de.Fields["beforeSwitch"], &run) != nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("before-switch command: ")
	switch {
	case run.Signal != nil:
		b.WriteString("killed by signal " + safeText(*run.Signal))
	case run.ExitCode != nil:
		fmt.Fprintf(&b, "exit status %d", *run.ExitCode)
	default:
		b.WriteString("did not run to its end")
	}
	if run.DurationMs < 1000 {
		fmt.Fprintf(&b, " after %d ms", run.DurationMs)
	} else {
		fmt.Fprintf(&b, " after %.1f s", float64(run.DurationMs)/1000)
	}
	if run.TimedOut {
		b.WriteString(" (stopped at --max-pause)")
	}
	if len(run.Output) == 0 {
		b.WriteString("; no output\n")
		return b.String()
	}
	fmt.Fprintf(&b, "; last %s of output:\n", counted(len(run.Output), "line", "lines"))
	for _, l := range run.Output {
		b.WriteString("    " + safeText(l) + "\n")
	}
	return b.String()
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
	procs, ok := failedProcesses(de.Fields["processes"])
	if !ok {
		return ""
	}
	var b strings.Builder
	for _, p := range procs {
		head := processOutcome(p)
		if head == "" {
			continue
		}
		b.WriteString(head)
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

// failedProcesses reads a failed deploy's "processes" field (of the error
// reply or of the "deploy failed" event).
func failedProcesses(raw json.RawMessage) ([]failedProcess, bool) {
	if raw == nil {
		return nil, false
	}
	var procs []failedProcess
	if json.Unmarshal(raw, &procs) != nil {
		return nil, false
	}
	return procs, true
}

// processOutcome is the first line of a process in failureDetail, without
// its output: "web exited 2 times (code 3), restarted 1 time, restart
// limit reached", "web did not exit"; "" for a process that neither
// exited nor failed its health check.
func processOutcome(p failedProcess) string {
	if p.Exits == 0 && !p.Failing {
		return ""
	}
	var b strings.Builder
	b.WriteString(safeText(p.ID))
	if p.Exits == 0 {
		b.WriteString(" did not exit")
	} else {
		fmt.Fprintf(&b, " exited %s (%s)", counted(p.Exits, "time", "times"), exitCauses(p))
	}
	if p.Restarts > 0 {
		fmt.Fprintf(&b, ", restarted %s", counted(p.Restarts, "time", "times"))
	}
	if p.RestartLimitReached {
		b.WriteString(", restart limit reached")
	}
	return b.String()
}

// maxBriefOutputRunes cuts the one output line the readable event forms
// show of a failed deploy, so its line stays readable.
const maxBriefOutputRunes = 80

// processesBrief is the "processes" field of a "deploy failed" event in
// the readable forms (status, events and the daemon log on a terminal),
// in failureDetail's words on one line: each process that exited or
// failed, and the failing one's last output line, cut at
// maxBriefOutputRunes:
//
//	[web exited 3 times (code 3), restart limit reached, last output: Error: boom; worker exited 1 time (code 1)]
func processesBrief(raw json.RawMessage) (string, bool) {
	procs, ok := failedProcesses(raw)
	if !ok {
		return "", false
	}
	var parts []string
	for _, p := range procs {
		head := processOutcome(p)
		if head == "" {
			continue
		}
		if p.Failing && len(p.LastOutput) > 0 {
			last := p.LastOutput[len(p.LastOutput)-1].Line
			if r := []rune(last); len(r) > maxBriefOutputRunes {
				last = string(r[:maxBriefOutputRunes]) + "…"
			}
			head += ", last output: " + termText(last)
		}
		parts = append(parts, head)
	}
	return "[" + strings.Join(parts, "; ") + "]", true
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

// safeText makes application output safe to print by the terminal rule
// (termText: quoted with escapes when it holds a control character or a
// bidirectional override), after cutting a line longer than
// maxDetailLineRunes, which then ends with "…".
func safeText(s string) string {
	n := 0
	for i := range s {
		if n == maxDetailLineRunes {
			s = s[:i] + "…"
			break
		}
		n++
	}
	return termText(s)
}
