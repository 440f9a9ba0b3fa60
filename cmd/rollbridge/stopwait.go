package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
	"github.com/spf13/cobra"
)

// progressEvery is how often a long stop says what it still waits for,
// pollEvery how often it asks whether a queued stop has begun.
var (
	progressEvery = 10 * time.Second
	pollEvery     = 250 * time.Millisecond
)

// stopWait is a shutdown or stop whose wait is bounded by the config's
// longest stop sequence (engine.ShutdownBound, engine.ReleaseStopBound),
// counted from the moment the stop begins, so the CLI never hangs
// silently: after the bound it says what is still running and fails;
// without a bound ("indefinite" graceful stops) it says every
// progressEvery what it still waits for.
type stopWait struct {
	ep      control.Endpoint
	what    string            // "shutdown", "stop of release v2"
	bound   time.Duration     // with bounded
	bounded bool              //
	procs   []stoppingProcess // what the command stops, as status listed it
	stderr  io.Writer
	// showProgress prints progress lines also for a bounded wait (on a
	// terminal); an unbounded wait always prints them.
	showProgress bool
	// begun reports whether the daemon has started the work; nil: at
	// once. A stop queued behind another operation has not: the bound
	// does not run yet, and the daemon drops a queued command whose
	// client left, so giving up then would lose it.
	begun func() bool
}

// stoppingProcess is a process the command is about to stop, with its
// start time, so a recycled pid is never reported as still running.
type stoppingProcess struct {
	id, release string
	pid         int
	start       uint64
}

func (p stoppingProcess) running() bool {
	ticks, ok := runtime.StartTime(p.pid)
	return ok && ticks == p.start
}

// String names the process for the waiting lines and the time-out
// error; its id and release come from the daemon (termText).
func (p stoppingProcess) String() string {
	if p.release != "" {
		return fmt.Sprintf("%s (pid %d, release %s)", termText(p.id), p.pid, termText(p.release))
	}
	return fmt.Sprintf("%s (pid %d)", termText(p.id), p.pid)
}

// call sends request and waits for its answer, for at most the bound
// once the work has begun.
func (w *stopWait) call(request []byte) ([]byte, error) {
	ctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	type answer struct {
		raw []byte
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		raw, err := control.CallContext(ctx, w.ep, request)
		answered <- answer{raw, err}
	}()
	sent := time.Now()
	began, started := sent, w.begun == nil
	nextNote := sent.Add(progressEvery)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case a := <-answered:
			return a.raw, a.err
		case now := <-tick.C:
			if !started && w.begun() {
				started, began = true, now
			}
			if started && w.bounded && now.Sub(began) > w.bound {
				giveUp()
				<-answered
				return nil, w.timedOut()
			}
			if now.After(nextNote) {
				nextNote = now.Add(progressEvery)
				switch {
				case !started && w.showProgress:
					fmt.Fprintf(w.stderr, "Waiting for the %s (%s): it waits for the operation before it to finish\n", w.what, seconds(now.Sub(sent)))
				case started && (!w.bounded || w.showProgress):
					fmt.Fprintf(w.stderr, "Waiting for the %s (%s): %s\n", w.what, seconds(now.Sub(sent)), w.remaining())
				}
			}
		}
	}
}

// remaining says which of the processes still run.
func (w *stopWait) remaining() string {
	var left []string
	for _, p := range w.procs {
		if p.running() {
			left = append(left, p.String())
		}
	}
	if len(left) == 0 {
		return "all of its processes have stopped"
	}
	return "still running: " + strings.Join(left, ", ")
}

func (w *stopWait) timedOut() error {
	var left []stoppingProcess
	for _, p := range w.procs {
		if p.running() {
			left = append(left, p)
		}
	}
	msg := fmt.Sprintf("The daemon did not finish the %s within %s (the longest stop sequence of the config plus a margin).", w.what, seconds(w.bound))
	if len(left) == 0 {
		return errors.New(msg + " All of its processes have stopped; it is still finishing the rest (client connections, the state file).")
	}
	names := make([]string, len(left))
	pids := make([]string, len(left))
	for i, p := range left {
		names[i], pids[i] = p.String(), strconv.Itoa(p.pid)
	}
	return fmt.Errorf("%s Still running: %s. The daemon goes on stopping them in the background; check with \"rollbridge status\" or \"ps -s %s\".",
		msg, strings.Join(names, ", "), strings.Join(pids, ","))
}

// seconds prints a duration as whole seconds ("45 s") or tenths below 10 s.
func seconds(d time.Duration) string {
	if d < 10*time.Second {
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	}
	return strconv.Itoa(int(d.Round(time.Second).Seconds())) + " s"
}

// statusProcesses lists the processes of a status reply that a command
// stops: those of release (every release when ""), and with daemonWide
// the persistent services and singletons too.
func statusProcesses(raw []byte, release string, daemonWide bool) []stoppingProcess {
	type proc struct {
		ID  string `json:"id"`
		PID int    `json:"pid"`
	}
	var s struct {
		Releases []struct {
			ReleaseID string `json:"releaseId"`
			Processes []proc `json:"processes"`
		} `json:"releases"`
		Services   []struct{ Process proc } `json:"services"`
		Singletons []struct{ Process proc } `json:"singletons"`
	}
	if json.Unmarshal(raw, &s) != nil {
		return nil
	}
	var out []stoppingProcess
	add := func(p proc, release string) {
		if p.PID <= 0 {
			return
		}
		if start, ok := runtime.StartTime(p.PID); ok {
			out = append(out, stoppingProcess{id: p.ID, release: release, pid: p.PID, start: start})
		}
	}
	for _, r := range s.Releases {
		if release == "" || r.ReleaseID == release {
			for _, p := range r.Processes {
				add(p, r.ReleaseID)
			}
		}
	}
	if daemonWide {
		for _, e := range s.Services {
			add(e.Process, "")
		}
		for _, e := range s.Singletons {
			add(e.Process, "")
		}
	}
	return out
}

// relayStop loads the config (or takes --socket), lists what the command
// will stop, lets confirm refuse it (nil: no question; it is also told when status
// could not be read), sends the request
// built after that and prints the reply, waiting at most the config's
// bound; without a config the wait has no bound and says every
// progressEvery what it waits for. summarize, when not nil, renders the
// reply for a person from the status before the command and the reply.
func relayStop(cmd *cobra.Command, configPath, socket string, plan func(*jsconfig.Plan, control.Endpoint, []byte) stopWait, request func() []byte, confirm func(status []byte, statusErr error) error, summarize func(before, reply []byte) string) error {
	ep, p, err := daemonTarget(cmd, configPath, socket)
	if err != nil {
		return err
	}
	// What runs now, to say later what is still running; a daemon that
	// does not answer status gets the command anyway (and its error),
	// unless confirm, which would have asked, refuses that.
	status, statusErr := control.Call(ep, control.SortedRequest("status"), control.ReadTimeout)
	if confirm != nil {
		if err := confirm(status, statusErr); err != nil {
			return err
		}
	}
	w := plan(p, ep, status)
	w.ep, w.stderr = ep, cmd.ErrOrStderr()
	w.showProgress = isTerminal(cmd.ErrOrStderr())
	raw, err := w.call(request())
	if err != nil {
		return err
	}
	if summarize == nil {
		return printPretty(cmd.OutOrStdout(), raw)
	}
	return printResult(cmd.OutOrStdout(), raw, func() string { return summarize(status, raw) })
}

// shutdownWait bounds a shutdown: every process stops. Without a plan
// (--socket) the stop sequences are unknown, so there is no bound.
func shutdownWait(p *jsconfig.Plan, _ control.Endpoint, status []byte) stopWait {
	w := stopWait{what: "shutdown", procs: statusProcesses(status, "", true)}
	if p != nil {
		w.bound, w.bounded = engine.ShutdownBound(p)
	}
	return w
}

// releaseStopWait bounds a stop of release id ("" for the active one).
// Without a plan (--socket) the wait has no bound.
func releaseStopWait(id string) func(*jsconfig.Plan, control.Endpoint, []byte) stopWait {
	return func(p *jsconfig.Plan, ep control.Endpoint, status []byte) stopWait {
		if id == "" {
			var s struct {
				Active string `json:"activeReleaseId"`
			}
			json.Unmarshal(status, &s)
			id = s.Active
		}
		w := stopWait{what: "stop"}
		if p != nil {
			w.bound, w.bounded = engine.ReleaseStopBound(p)
		}
		if id != "" {
			w.what = "stop of release " + id
			w.procs = statusProcesses(status, id, false)
			before := releaseView(status, id)
			w.begun = func() bool { return stopBegun(ep, id, before) }
		}
		return w
	}
}

// stopBegun reports whether this command's stop holds the operation
// lock, as the daemon's operations command tells: its running entry is
// this process's. A daemon without that command (the Node.js one) is
// asked for its status instead, and the stop has begun once release id,
// before as it was, shows stopped. A daemon that does not answer: begun.
func stopBegun(ep control.Endpoint, id string, before releaseSnapshot) bool {
	raw, err := control.Call(ep, control.SortedRequest("operations"), control.ReadTimeout)
	var de *control.DaemonError
	if errors.As(err, &de) && strings.HasPrefix(de.Message, "Unknown command") {
		raw, err := control.Call(ep, control.SortedRequest("status"), control.ReadTimeout)
		if err != nil {
			return true
		}
		now := releaseView(raw, id)
		if before.state == "stopped" {
			return now != before // stopped again: stoppedAt moved
		}
		return now.state == "stopped"
	}
	var ops struct {
		Running *operationView `json:"running"`
	}
	if err != nil || json.Unmarshal(raw, &ops) != nil {
		return true
	}
	r := ops.Running
	return r != nil && r.ClientPid != nil && *r.ClientPid == os.Getpid()
}

// releaseSnapshot is a release's state and stoppedAt as status shows them.
type releaseSnapshot struct{ state, stoppedAt string }

// releaseView is the state and stoppedAt of release id in a status, to
// tell when a queued stop has begun on a daemon without the operations
// command: the daemon marks a running or
// draining release "stopped" as the first step of a stop, then stops its
// processes (and sets stoppedAt at the end, also for a release that was
// stopped already, which has nothing left to stop). A status that cannot
// be read, or no longer lists the release, shows it "stopped".
func releaseView(status []byte, id string) (v releaseSnapshot) {
	var s struct {
		Releases []struct {
			ReleaseID string `json:"releaseId"`
			State     string `json:"state"`
			StoppedAt string `json:"stoppedAt"`
		} `json:"releases"`
	}
	v.state = "stopped"
	if json.Unmarshal(status, &s) != nil {
		return v
	}
	for _, r := range s.Releases {
		if r.ReleaseID == id {
			v.state, v.stoppedAt = r.State, r.StoppedAt
			return v
		}
	}
	return v
}
