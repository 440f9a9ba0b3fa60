package engine

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/runtime"
)

// recordedHoldEngine is holdEngine with a state file: r is being deployed
// (in e.starting, as during a deploy) and the persister runs.
func recordedHoldEngine(t *testing.T, statePath string) (*Engine, *Release, func(req DeployRequest) (func(), error)) {
	t.Helper()
	e, plan, r := holdEngine(t)
	e.persist = newPersister(e, statePath)
	e.persist.start()
	t.Cleanup(e.persist.stopTimer)
	e.mu.Lock()
	e.starting[r] = struct{}{}
	e.mu.Unlock()
	return e, r, func(req DeployRequest) (func(), error) { return e.holdBeforeSwitch(plan, r, req) }
}

// beforeSwitchEntries are the entries of release id in the state file at
// path whose hook is the --before-switch command.
func beforeSwitchEntries(t *testing.T, path, id string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Releases []struct {
			ReleaseID string `json:"releaseId"`
			Processes []map[string]any
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("state file: %v\n%s", err, data)
	}
	var out []map[string]any
	for _, r := range doc.Releases {
		for _, p := range r.Processes {
			if r.ReleaseID == id && p["hook"] == beforeSwitchLabel {
				out = append(out, p)
			}
		}
	}
	return out
}

// While the --before-switch command runs, the state file records it as an
// entry of the release being deployed, with its pid, group and start time
// (so the next daemon and recover find it); once it ended, the entry goes.
func TestBeforeSwitchCommandIsInTheStateFileWhileItRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	e, r, hold := recordedHoldEngine(t, path)
	pidFile, goFile := filepath.Join(r.Path, "pid"), filepath.Join(r.Path, "go")
	var holdErr error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		lift, err := hold(DeployRequest{HoldTraffic: true, MaxPause: 30 * time.Second,
			BeforeSwitch: `echo $$ > pid.tmp && mv pid.tmp pid; while [ ! -e go ]; do sleep 0.01; done`})
		if lift != nil {
			lift()
		}
		holdErr = err
	}()
	t.Cleanup(func() { os.WriteFile(goFile, nil, 0o644); <-finished })
	var pid int
	waitFor(t, "the command to run", func() bool {
		raw, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		return pid > 0
	})
	// The write that recorded it happened before it could run.
	list := beforeSwitchEntries(t, path, "v2")
	if len(list) != 1 {
		t.Fatalf("the running command is not in the state file: %v", list)
	}
	ticks, ok := runtime.StartTime(pid)
	want := map[string]any{"hook": "before-switch command", "id": "v2 before-switch command", "pgid": float64(pid), "pid": float64(pid), "startTime": float64(ticks), "state": "running"}
	if !ok || len(list[0]) != len(want) {
		t.Fatalf("entry %v, want %v", list[0], want)
	}
	for k, v := range want {
		if list[0][k] != v {
			t.Fatalf("entry %v, want %v", list[0], want)
		}
	}
	// Read back as a crashed daemon's file is: a confirmed orphan of v2.
	orphans, _, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range orphans {
		if o.Pid == pid {
			found = o.ID == "v2 before-switch command" && o.Pgid == pid && o.StartTime == ticks && *o.ReleaseID == "v2" && o.identity() == identityConfirmed
		}
	}
	if !found {
		t.Fatalf("orphans read back %+v", orphans)
	}

	os.WriteFile(goFile, nil, 0o644)
	<-finished
	if holdErr != nil {
		t.Fatal(holdErr)
	}
	waitFor(t, "the entry to leave the state file", func() bool { return len(beforeSwitchEntries(t, path, "v2")) == 0 })
	if names := eventNames(e); !strings.Contains(names, "traffic drained,before-switch command started,before-switch command finished,traffic resumed") {
		t.Fatalf("events %s", names)
	}
}

// A command that cannot be recorded does not run: the hold is lifted and
// the deploy is called off with an error that names the state file.
func TestBeforeSwitchCommandThatCannotBeRecordedDoesNotRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "state.json")
	e, r, hold := recordedHoldEngine(t, path)
	marker := filepath.Join(r.Path, "ran")
	lift, err := hold(DeployRequest{HoldTraffic: true, MaxPause: 10 * time.Second, BeforeSwitch: "touch " + marker})
	var he *HoldError
	if lift != nil || !errors.As(err, &he) || he.Run != nil ||
		!strings.HasPrefix(err.Error(), "Could not record the --before-switch command of release v2 in the state file "+path+": ENOENT") ||
		!strings.Contains(err.Error(), "The --before-switch command did not run and the deploy was called off: release v2 was stopped") ||
		!strings.HasSuffix(err.Error(), "then deploy again.") {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the command ran although it was not recorded: %v", err)
	}
	if heldByDeploy(e) != "" {
		t.Fatal("a failed hold must be lifted")
	}
	// The persister's background writes fail too and log "state persist
	// failed" from its own goroutine, so one can come between any two of
	// the hold's events (seen in 11 of 3,000 runs under CPU load): the
	// order is checked among the hold's events alone.
	names := strings.ReplaceAll(eventNames(e), "state persist failed,", "")
	if strings.Contains(names, "before-switch command started") || !strings.Contains(names, "traffic resumed,hold aborted") {
		t.Fatalf("events %s", names)
	}
}

// The gate: the shell cannot run the command before record returns, and
// a failed record makes it exit without running it.
func TestRunBeforeSwitchRunsNothingBeforeItIsRecorded(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	refused := errors.New("no room")
	run := runBeforeSwitch(t.Context(), "touch "+marker, dir, nil, time.Now().Add(10*time.Second), func(pid int, _ uint64) error {
		var line []byte
		waitFor(t, "the shell's command line", func() bool {
			line, _ = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			return len(line) > 0
		})
		if !strings.Contains(string(line), "rollbridge_gate") {
			t.Errorf("the shell runs ungated: %q", line)
		}
		return refused
	}, nil)
	if run.ok() || !errors.Is(run.Unrecorded, refused) || run.ExitCode != nil {
		t.Fatalf("run %+v", run)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the command ran: %v", err)
	}
}

// Once the daemon is stopping, a deploy's hold does not begin: no
// request is held and no "traffic paused" is logged.
func TestHoldForDeployRefusedOnceStopping(t *testing.T) {
	e, plan, r := holdEngine(t)
	e.stopping.Store(true)
	lift, err := e.holdBeforeSwitch(plan, r, DeployRequest{HoldTraffic: true, MaxPause: 10 * time.Second, BeforeSwitch: "true"})
	if lift != nil || !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("lift %v err %v", lift != nil, err)
	}
	if heldByDeploy(e) != "" {
		t.Fatal("a hold began during a shutdown")
	}
	if names := eventNames(e); strings.Contains(names, "traffic paused") {
		t.Fatalf("events %s", names)
	}
}

// A shutdown that began after the hold but before the command was
// recorded keeps the command from running.
func TestBeforeSwitchCommandDoesNotStartOnceStopping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	e, r, _ := recordedHoldEngine(t, path)
	marker := filepath.Join(r.Path, "ran")
	e.stopping.Store(true)
	run := runBeforeSwitch(t.Context(), "touch "+marker, r.Path, nil, time.Now().Add(10*time.Second), e.recordBeforeSwitch(r, &beforeSwitchCommand{command: "touch " + marker}), nil)
	if !errors.Is(run.Unrecorded, ErrShuttingDown) {
		t.Fatalf("run %+v", run)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the command ran during a shutdown: %v", err)
	}
	e.mu.Lock()
	recorded := r.beforeSwitch
	e.mu.Unlock()
	if recorded != nil {
		t.Fatalf("recorded %+v", recorded)
	}
}
