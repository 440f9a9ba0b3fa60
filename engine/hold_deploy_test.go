package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

func TestRunBeforeSwitchReportsExitAndLastLines(t *testing.T) {
	dir := t.TempDir()
	run := runBeforeSwitch(context.Background(),
		`pwd; echo "x=$X"; i=0; while [ $i -lt 50 ]; do echo "line $i"; i=$((i+1)); done; echo oops >&2; exit 3`,
		dir, []string{"X=from-env", "PATH=" + os.Getenv("PATH")}, time.Now().Add(10*time.Second), nil, nil)
	if run.ok() || run.ExitCode == nil || *run.ExitCode != 3 || run.Signal != "" || run.TimedOut {
		t.Fatalf("run: %+v", run)
	}
	if run.status() != "exit status 3" {
		t.Fatalf("status %q", run.status())
	}
	if len(run.Output) != BeforeSwitchOutputLines || run.Output[len(run.Output)-1] != "oops" || run.Output[0] != "line 11" {
		t.Fatalf("output: %d lines, %q … %q", len(run.Output), run.Output[0], run.Output[len(run.Output)-1])
	}
	all := runBeforeSwitch(context.Background(), `pwd; echo "x=$X"`, dir, []string{"X=from-env"}, time.Now().Add(10*time.Second), nil, nil)
	if !all.ok() || strings.Join(all.Output, "|") != dir+"|x=from-env" {
		t.Fatalf("cwd and env: %+v", all)
	}
	b, _ := json.Marshal(run)
	if !strings.HasPrefix(string(b), `{"durationMs":`) || !strings.Contains(string(b), `"exitCode":3,"output":["line 11",`) || !strings.HasSuffix(string(b), `"oops"],"timedOut":false}`) {
		t.Fatalf("reply field %s", b)
	}
}

func TestRunBeforeSwitchStopsItsGroupAtTheDeadline(t *testing.T) {
	old := beforeSwitchKillAfter
	beforeSwitchKillAfter = 300 * time.Millisecond
	t.Cleanup(func() { beforeSwitchKillAfter = old })
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	// The shell ignores SIGTERM (so SIGKILL must follow) and leaves a
	// child in its group that would outlive it.
	var group, child int
	var recordedAt time.Time
	var deadlineAt time.Duration
	groupAliveAtDeadline := false
	began := time.Now()
	deadline := began.Add(500 * time.Millisecond)
	run := runBeforeSwitch(context.Background(),
		`trap '' TERM; sleep 60 & echo started; echo $! > `+pidFile+`; sleep 30`,
		dir, nil, deadline, func(pid int, _ uint64) error { group, recordedAt = pid, time.Now(); return nil },
		func() {
			deadlineAt, groupAliveAtDeadline = time.Since(began), !exited(group)
			// SIGTERM follows this call. A loaded machine can take longer
			// than the deadline to start the shell (0.7 s seen): its trap,
			// child and output must be in place first, or SIGTERM ends it.
			// (No t.Fatal here: the group must still be stopped.)
			for ready := time.Now().Add(10 * time.Second); child == 0 && time.Now().Before(ready); time.Sleep(5 * time.Millisecond) {
				raw, _ := os.ReadFile(pidFile)
				child, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
			}
		})
	if child == 0 {
		t.Fatal("the shell never wrote its child's pid")
	}
	if !run.TimedOut || run.Signal != "SIGKILL" || run.ExitCode != nil {
		t.Fatalf("run: %+v", run)
	}
	// The deploy's hold is lifted at the deadline, not once the command
	// is finally gone (SIGKILL comes beforeSwitchKillAfter later).
	if deadlineAt < 500*time.Millisecond || !groupAliveAtDeadline || time.Since(began)-deadlineAt < beforeSwitchKillAfter {
		t.Fatalf("atDeadline ran %v after the start (group alive then: %v); the run took %v", deadlineAt, groupAliveAtDeadline, time.Since(began))
	}
	// The run began before its record, and ended no sooner than the grace
	// after the deadline (a loaded machine can start it well after began).
	if min := deadline.Sub(recordedAt) + beforeSwitchKillAfter; run.Duration < min {
		t.Fatalf("the run took %s, want at least %s: SIGKILL came before the grace", run.Duration, min)
	}
	waitFor(t, "the group to be gone", func() bool {
		return exited(group) && exited(child) // the shell and what it left
	})
	if strings.Join(run.Output, "|") != "started" {
		t.Fatalf("output %q", run.Output)
	}
}

func TestRunBeforeSwitchKillsWhatItLeavesBehind(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	// The shell exits at once; its background child keeps the output
	// pipe open and must neither hold the step nor outlive it.
	run := runBeforeSwitch(context.Background(), `sleep 60 & echo $! > `+pidFile+`; exit 0`, dir, nil, time.Now().Add(20*time.Second), nil, nil)
	if !run.ok() || run.Duration > 5*time.Second {
		t.Fatalf("run: %+v", run)
	}
	raw, _ := os.ReadFile(pidFile)
	child, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if child == 0 {
		t.Fatal("no child pid")
	}
	waitFor(t, "the left-behind child to be gone", func() bool { return exited(child) })
}

// exited reports whether pid has ended: gone, or a zombie that init has
// not reaped yet (runtime.StartTime sees neither as a process).
func exited(pid int) bool {
	_, running := runtime.StartTime(pid)
	return !running
}

func TestTailBufferKeepsWholeLastLines(t *testing.T) {
	tb := &tailBuffer{max: 16}
	tb.Write([]byte("first line that is cut\nab\ncd\n"))
	tb.Write([]byte("ef"))
	if got := strings.Join(tb.lines(10), "|"); got != "ab|cd|ef" {
		t.Fatalf("lines %q", got)
	}
	if got := strings.Join(tb.lines(2), "|"); got != "cd|ef" {
		t.Fatalf("last 2 %q", got)
	}
	long := &tailBuffer{max: 64 << 10}
	long.Write([]byte(strings.Repeat("é", 2000) + "\n"))
	if l := long.lines(5); len(l) != 1 || len(l[0]) > failureLineBytes || !strings.HasSuffix(l[0], "…") {
		t.Fatalf("a long line is cut: %d bytes", len(l[0]))
	}
}

// holdEngine is an engine with a proxied process "web" whose env has
// GREETING, and a release r that a deploy with the hold would switch to.
func holdEngine(t *testing.T) (*Engine, *jsconfig.Plan, *Release) {
	t.Helper()
	plan := &jsconfig.Plan{Application: "shop", Processes: []jsconfig.Process{{
		ID: "web", Policy: jsconfig.PolicyProxied, Command: "true", Replicas: 1,
		Env: []jsconfig.EnvVar{{Name: "GREETING", Value: "hello {{releaseId}}"}},
	}}}
	e := New(Options{Plan: plan})
	t.Cleanup(e.cancel)
	return e, plan, newRelease("v2", t.TempDir(), "v2")
}

func heldByDeploy(e *Engine) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if h := e.traffic.deployHold; h != nil {
		return h.releaseID
	}
	return ""
}

func eventNames(e *Engine) string {
	var names []string
	for _, raw := range e.events.recent(0, false) {
		var ev struct{ Message string }
		json.Unmarshal(raw, &ev)
		names = append(names, ev.Message)
	}
	return strings.Join(names, ",")
}

func TestHoldBeforeSwitchSucceedsAndHoldsUntilLifted(t *testing.T) {
	e, plan, r := holdEngine(t)
	marker := filepath.Join(r.Path, "marker")
	lift, err := e.holdBeforeSwitch(plan, r, DeployRequest{HoldTraffic: true, MaxPause: 10 * time.Second,
		BeforeSwitch: `printf '%s %s %s' "$PWD" "$GREETING" {{releaseId}} > ` + marker})
	if err != nil {
		t.Fatal(err)
	}
	if heldByDeploy(e) != "v2" {
		t.Fatal("the hold ends only when the caller lifts it")
	}
	lift()
	lift() // once only
	if heldByDeploy(e) != "" || e.trafficObject(false) != nil {
		t.Fatal("lift ends the hold")
	}
	got, _ := os.ReadFile(marker)
	if string(got) != r.Path+" hello v2 v2" {
		t.Fatalf("the command ran in %q", got)
	}
	if names := eventNames(e); names != "traffic paused,traffic drained,before-switch command started,before-switch command finished,traffic resumed" {
		t.Fatalf("events %s", names)
	}
}

func TestHoldBeforeSwitchFailuresLiftTheHold(t *testing.T) {
	old := beforeSwitchKillAfter
	beforeSwitchKillAfter = 200 * time.Millisecond
	t.Cleanup(func() { beforeSwitchKillAfter = old })
	for _, tc := range []struct {
		name, cmd string
		max       time.Duration
		shutdown  bool
		want      string
		field     string
	}{
		{name: "exit 3", cmd: "echo one; echo two; exit 3", max: 10 * time.Second,
			want: "The --before-switch command failed: it ended with exit status 3 after", field: `"exitCode":3,"output":["one","two"],"timedOut":false`},
		{name: "over max-pause", cmd: "sleep 30", max: 300 * time.Millisecond,
			want: "did not finish within --max-pause (300ms) and was stopped (killed by signal SIGTERM)", field: `"signal":"SIGTERM","output":[],"timedOut":true`},
		{name: "shutdown", cmd: "sleep 30", max: 10 * time.Second, shutdown: true, want: ErrShuttingDown.Error()},
		{name: "template", cmd: "echo {{nope}}", max: 10 * time.Second, want: "Missing template value for {{nope}}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, plan, r := holdEngine(t)
			if tc.shutdown {
				go func() {
					for deadline := time.Now().Add(10 * time.Second); !strings.Contains(eventNames(e), "before-switch command started") && time.Now().Before(deadline); {
						time.Sleep(5 * time.Millisecond)
					}
					e.stopping.Store(true)
					e.cancel()
				}()
			}
			lift, err := e.holdBeforeSwitch(plan, r, DeployRequest{HoldTraffic: true, MaxPause: tc.max, BeforeSwitch: tc.cmd})
			if err == nil || lift != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v", err)
			}
			if heldByDeploy(e) != "" {
				t.Fatal("a failed hold must be lifted")
			}
			if tc.field != "" {
				b := control.FailureFor(err)
				if !strings.Contains(string(b), tc.field) || !strings.Contains(string(b), "no release was active") {
					t.Fatalf("reply %s", b)
				}
			}
			names := eventNames(e)
			if tc.name == "template" {
				if strings.Contains(names, "traffic paused") {
					t.Fatalf("a command that cannot render holds nothing: %s", names)
				}
				return
			}
			order := "before-switch command failed,traffic resumed,hold aborted"
			if tc.name == "over max-pause" {
				// At --max-pause the hold ends first; the command is
				// stopped while the previous release serves.
				order = "before-switch command started,traffic resumed,before-switch command failed,hold aborted"
			}
			if !strings.Contains(names, order) {
				t.Fatalf("events %s", names)
			}
		})
	}
}

func TestDeployHoldFieldsAreValidated(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{"command":"deploy","releasePath":"/r","beforeSwitch":"true"}`, "beforeSwitch requires holdTraffic"},
		{`{"command":"deploy","releasePath":"/r","maxPauseMs":100}`, "maxPauseMs requires holdTraffic"},
		{`{"command":"deploy","releasePath":"/r","holdTraffic":"yes"}`, "holdTraffic must be true or false"},
		{`{"command":"deploy","releasePath":"/r","holdTraffic":true,"maxPauseMs":0}`, "maxPauseMs must be a whole number of milliseconds from 1 to 3600000"},
		{`{"command":"deploy","releasePath":"/r","holdTraffic":true,"maxPauseMs":3600001}`, "maxPauseMs must be"},
		{`{"command":"deploy","releasePath":"/r","holdTraffic":true,"maxPauseMs":1.5}`, "maxPauseMs must be"},
		{`{"command":"deploy","releasePath":"/r","holdTraffic":true,"beforeSwitch":" "}`, "beforeSwitch must be a non-empty shell command"},
		{`{"command":"deploy","releasePath":"/r","holdTraffic":true,"beforeSwitch":3}`, "beforeSwitch: "},
		{`{"command":"deploy","releasePath":"/r","holdTraffic":true,"beforeSwitch":"` + strings.Repeat("x", MaxBeforeSwitchBytes+1) + `"}`, "the limit is 65536 bytes"},
	} {
		req, err := control.ParseRequest([]byte(tc.line))
		if err != nil {
			t.Fatal(err)
		}
		var d DeployRequest
		if err := holdFields(req, &d); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.80s: %v, want %q", tc.line, err, tc.want)
		}
	}
	req, _ := control.ParseRequest([]byte(`{"command":"deploy","releasePath":"/r","holdTraffic":true}`))
	var d DeployRequest
	if err := holdFields(req, &d); err != nil || !d.HoldTraffic || d.MaxPause != DefaultMaxPause || d.BeforeSwitch != "" {
		t.Fatalf("defaults: %+v %v", d, err)
	}
}

// A deploy's hold inside an operator pause leaves the pause on at its
// end: a deploy never resumes what it did not pause.
func TestHoldBeforeSwitchInsideOperatorPause(t *testing.T) {
	e, plan, r := holdEngine(t)
	e.pauseTraffic(time.Minute)
	t.Cleanup(func() { e.resumeTraffic() })
	lift, err := e.holdBeforeSwitch(plan, r, DeployRequest{HoldTraffic: true, MaxPause: 10 * time.Second, BeforeSwitch: "true"})
	if err != nil {
		t.Fatal(err)
	}
	lift()
	e.mu.Lock()
	paused := e.traffic.pause != nil && !e.traffic.pause.expired
	e.mu.Unlock()
	if !paused || heldByDeploy(e) != "" {
		t.Fatal("the operator's pause must outlive the deploy's hold")
	}
	if o, _ := e.trafficObject(false).MarshalJSON(); !strings.Contains(string(o), `"deployHold":null`) || !strings.HasSuffix(string(o), `"state":"paused"}`) {
		t.Fatalf("traffic %s", o)
	}
	// A failed hold leaves it on too.
	if _, err := e.holdBeforeSwitch(plan, r, DeployRequest{HoldTraffic: true, MaxPause: 10 * time.Second, BeforeSwitch: "exit 1"}); err == nil {
		t.Fatal("exit 1 must fail")
	}
	e.mu.Lock()
	paused = e.traffic.pause != nil
	e.mu.Unlock()
	if !paused || heldByDeploy(e) != "" {
		t.Fatal("a failed hold must leave the operator's pause on and its own hold off")
	}
}
