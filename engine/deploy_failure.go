package engine

import (
	"errors"
	"unicode/utf8"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// failureOutputLines is how many of a process's last output lines a
// failed deploy reports (docs/cli.md#deploy).
const failureOutputLines = 5

// failureLineBytes bounds each of those lines: an application may print
// lines of up to runtime.MaxLineBytes, and the report is kept in the
// event log besides going to the client.
const failureLineBytes = 1024

// DeployFailure is a deploy (or rollback) whose new release did not pass
// its health check, with what happened to the release's processes during
// the attempt. Its message is the cause's, unchanged (scripts match it);
// the reply and the "deploy failed" event carry the processes as an
// additional field.
type DeployFailure struct {
	Err       error
	Processes []ProcessReport
}

func (f *DeployFailure) Error() string { return f.Err.Error() }

func (f *DeployFailure) Unwrap() error { return f.Err }

// ReplyFields are the fields the error reply carries besides "error" and
// "status".
func (f *DeployFailure) ReplyFields() jsconfig.Object {
	return jsconfig.Object{{Key: "processes", Value: f.Processes}}
}

// ProcessReport is one process of a release that failed to start.
type ProcessReport struct {
	ID    string
	State runtime.State // before the clean-up stopped it
	// Failing marks the process whose failure ended the deploy: the
	// proxied process, whose health check did not pass.
	Failing    bool
	Crashes    runtime.CrashReport
	LastOutput []runtime.OutputEntry // up to failureOutputLines, oldest first
}

// MarshalJSON writes the report with sorted keys, as every reply does.
func (p ProcessReport) MarshalJSON() ([]byte, error) {
	causes := make([]jsconfig.Object, 0, len(p.Crashes.Causes))
	for _, c := range p.Crashes.Causes {
		if c.Signal != nil {
			causes = append(causes, jsconfig.Object{{Key: "count", Value: c.Count}, {Key: "signal", Value: *c.Signal}})
		} else if c.Code != nil {
			causes = append(causes, jsconfig.Object{{Key: "code", Value: *c.Code}, {Key: "count", Value: c.Count}})
		}
	}
	out := p.LastOutput
	if out == nil {
		out = []runtime.OutputEntry{}
	}
	return jsconfig.Object{
		{Key: "exitCauses", Value: causes},
		{Key: "exits", Value: p.Crashes.Exits()},
		{Key: "failing", Value: p.Failing},
		{Key: "id", Value: p.ID},
		{Key: "lastOutput", Value: out},
		{Key: "restartLimitReached", Value: p.Crashes.GaveUp},
		{Key: "restarts", Value: p.Crashes.Restarts},
		{Key: "state", Value: string(p.State)},
	}.MarshalJSON()
}

// failureReport wraps a health-check failure with what happened to the
// release's processes; other errors are returned as they are.
func failureReport(cause error, procs []*instance) error {
	var health *runtime.HealthError
	if !errors.As(cause, &health) {
		return cause
	}
	reports := make([]ProcessReport, 0, len(procs))
	for _, in := range procs {
		s := in.proc.Status()
		rep := ProcessReport{ID: in.id, State: s.State, Failing: in.def.Policy == jsconfig.PolicyProxied, Crashes: in.proc.CrashReport()}
		// Output only of the processes the report is about: the failing
		// one and those that exited.
		if rep.Failing || rep.Crashes.Exits() > 0 {
			logs := s.Logs
			if len(logs) > failureOutputLines {
				logs = logs[len(logs)-failureOutputLines:]
			}
			for _, l := range logs {
				l.Line = cutLine(l.Line, failureLineBytes)
				rep.LastOutput = append(rep.LastOutput, l)
			}
		}
		reports = append(reports, rep)
	}
	return &DeployFailure{Err: cause, Processes: reports}
}

// cutLine cuts s to at most n bytes on a character boundary, ending
// with "…" when anything was cut.
func cutLine(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// watchWebCrashes closes the returned channel once the proxied process in
// has exited for good (its restart policy gave up) or has exited a second
// time: it never answered the health check, and waiting out the rest of
// the window would only delay the failure. stop ends the watch.
func watchWebCrashes(in *instance, stop <-chan struct{}) <-chan struct{} {
	giveUp := make(chan struct{})
	go func() {
		for {
			crashed := in.proc.Crashed()
			// A settling exit is decided on once its output is in, so that
			// the report shows what the process printed before it died.
			if r := in.proc.CrashReport(); !r.Settling && (r.GaveUp || r.Exits() >= 2) {
				close(giveUp)
				return
			}
			select {
			case <-crashed:
			case <-stop:
				return
			}
		}
	}()
	return giveUp
}
