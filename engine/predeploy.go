package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
	"golang.org/x/sys/unix"
)

// Cleanup is what predeploy-cleanup did (docs/cli.md#predeploy-cleanup).
type Cleanup struct {
	// NothingToDo: the daemon already has an active release on the
	// configured proxy; nothing was touched.
	NothingToDo    bool
	StoppedDaemon  bool
	RecoveredCount int
	// Unconfirmed are live orphans recorded without a start time whose
	// identity could not be confirmed; they were left running.
	Unconfirmed     []Orphan
	StoppedLegacies int
}

// Timings of predeploy-cleanup.
const (
	shutdownPoll    = 250 * time.Millisecond
	shutdownTimeout = 30 * time.Second
	legacyPoll      = 50 * time.Millisecond
	legacyConfirm   = time.Second
)

// PredeployCleanup prepares the host for a deploy (docs/cli.md#what-it-does):
// a daemon that already serves an active release on the configured proxy is
// left alone; otherwise a running daemon is shut down, the orphans of a
// crashed one are stopped and the configured legacy supervisors are taken
// down. releasePath ("" when not given) is the pending release.
func PredeployCleanup(plan *jsconfig.Plan, releasePath string) (*Cleanup, error) {
	res := &Cleanup{}
	path := plan.Control.Path
	ep := ControlEndpoint(plan.Control)
	probe, err := control.Probe(ep)
	if err != nil {
		return nil, err
	}
	if probe.Alive {
		if !probe.Rollbridge {
			return nil, fmt.Errorf("A non-Rollbridge process is using %s; refusing predeploy cleanup.", path)
		}
		if probe.Application != plan.Application {
			return nil, fmt.Errorf("A Rollbridge daemon for %q is using %s; expected %q.", probe.Application, path, plan.Application)
		}
		raw, err := control.Call(ep, control.SortedRequest("status"), control.ReadTimeout)
		if err != nil {
			return nil, err
		}
		keep, err := daemonServesRelease(plan, raw, releasePath)
		if err != nil {
			return nil, err
		}
		if keep {
			res.NothingToDo = true
			return res, nil
		}
		// As long as the config's stop sequences can take, not forever
		// (no bound with an "indefinite" graceful stop).
		var timeout time.Duration
		if bound, bounded := ShutdownBound(plan); bounded {
			timeout = bound
		}
		if _, err := control.Call(ep, control.SortedRequest("shutdown"), timeout); err != nil {
			var te *control.TimeoutError
			if errors.As(err, &te) {
				return nil, fmt.Errorf("Timed out waiting for Rollbridge daemon at %s to shut down.", path)
			}
			return nil, err
		}
		if err := waitForShutdown(ep); err != nil {
			return nil, err
		}
		res.StoppedDaemon = true
	}
	if plan.StatePath != "" {
		rec, err := Recover(plan, true)
		if err != nil {
			return nil, err
		}
		if n := len(rec.Survivors); n > 0 {
			return nil, fmt.Errorf("Could not stop %d Rollbridge orphaned %s.", n, plural(n, "process", "processes"))
		}
		res.RecoveredCount = len(rec.Found) - len(rec.Unconfirmed)
		res.Unconfirmed = rec.Unconfirmed
	}
	if plan.LegacyTakeover != nil {
		n, err := stopLegacy(plan.LegacyTakeover)
		if err != nil {
			return nil, err
		}
		res.StoppedLegacies = n
	}
	return res, nil
}

// daemonServesRelease is the reuse rule: the daemon has an active
// release, listens on the configured proxy, and the pending release does
// not bring another Rollbridge version.
func daemonServesRelease(plan *jsconfig.Plan, raw []byte, releasePath string) (bool, error) {
	var status struct {
		ActiveReleaseID any `json:"activeReleaseId"`
		Proxy           struct {
			Host         any `json:"host"`
			Port         any `json:"port"`
			UpstreamHost any `json:"upstreamHost"`
		} `json:"proxy"`
		Releases []struct {
			ReleaseID   any `json:"releaseId"`
			ReleasePath any `json:"releasePath"`
		} `json:"releases"`
	}
	if err := json.Unmarshal(raw, &status); err != nil {
		return false, nil // not a status we understand: restart the daemon
	}
	active, ok := status.ActiveReleaseID.(string)
	if !ok || active == "" {
		return false, nil
	}
	if status.Proxy.Host != plan.Proxy.Host || status.Proxy.Port != float64(plan.Proxy.Port) || status.Proxy.UpstreamHost != plan.Proxy.UpstreamHost {
		return false, nil
	}
	if releasePath == "" {
		return true, nil
	}
	var activePath string
	found := false
	for _, r := range status.Releases {
		if id, _ := r.ReleaseID.(string); id == active {
			activePath, _ = r.ReleasePath.(string)
			found = true
			break
		}
	}
	if !found {
		return true, nil
	}
	pending, err := packageVersion(releasePath)
	if err != nil {
		return false, err
	}
	current, err := packageVersion(activePath)
	if err != nil {
		return false, err
	}
	changed := pending != nil && current != nil && *pending != *current
	return !changed, nil
}

// packageVersion reads the rollbridge npm package version a release
// carries, nil when it has none.
func packageVersion(release string) (*string, error) {
	file := filepath.Join(release, "node_modules", "rollbridge", "package.json")
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, jsconfig.NodeError(err, "open", file)
	}
	var pkg map[string]any
	if err := json.Unmarshal(data, &pkg); err != nil {
		return nil, fmt.Errorf("Invalid JSON in %s: %s", file, strings.TrimPrefix(err.Error(), "json: "))
	}
	v, ok := pkg["version"].(string)
	if !ok {
		return nil, nil
	}
	return &v, nil
}

// waitForShutdown polls the socket until nothing answers.
func waitForShutdown(ep control.Endpoint) error {
	path := ep.Path
	deadline := time.Now().Add(shutdownTimeout)
	for {
		probe, err := control.Probe(ep)
		if err == nil && !probe.Alive {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Timed out waiting for Rollbridge daemon at %s to shut down.", path)
		}
		time.Sleep(shutdownPoll)
	}
}

// procRow is one process of the table.
type procRow struct {
	pid, ppid int
	args      string
	startTime uint64 // tells the process from a later one with its pid
}

// processTable lists the running processes with their parents and
// command lines, as `ps -eo pid=,ppid=,args=` would (zombies left out:
// they run nothing).
func processTable() ([]procRow, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("Failed to inspect running processes: %s", err)
	}
	var rows []procRow
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, closing := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || closing < open {
			continue
		}
		f := bytes.Fields(stat[closing+1:])
		if len(f) < 2 || f[0][0] == 'Z' || f[0][0] == 'X' {
			continue
		}
		ppid, _ := strconv.Atoi(string(f[1]))
		var start uint64
		if len(f) > 19 {
			start, _ = strconv.ParseUint(string(f[19]), 10, 64)
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.TrimRight(strings.ReplaceAll(string(cmdline), "\x00", " "), " ")
		if args == "" {
			args = "[" + string(stat[open+1:closing]) + "]" // a kernel thread, as ps shows it
		}
		rows = append(rows, procRow{pid: pid, ppid: ppid, args: args, startTime: start})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].pid < rows[j].pid })
	return rows, nil
}

// legacySelection picks the legacy processes: rows matching a screen
// session or every string of an includes list, then their descendants.
// This process and its ancestors are never picked.
func legacySelection(rows []procRow, lt *jsconfig.LegacyTakeover) []procRow {
	parent := map[int]int{}
	for _, r := range rows {
		parent[r.pid] = r.ppid
	}
	protected := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !protected[pid]; pid = parent[pid] {
		protected[pid] = true
	}
	selected := map[int]bool{}
	for _, r := range rows {
		if protected[r.pid] {
			continue
		}
		if matchesLegacy(r.args, lt) {
			selected[r.pid] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for _, r := range rows {
			if !selected[r.pid] && selected[r.ppid] && !protected[r.pid] {
				selected[r.pid] = true
				changed = true
			}
		}
	}
	var out []procRow
	for _, r := range rows {
		if selected[r.pid] {
			out = append(out, r)
		}
	}
	return out
}

func matchesLegacy(args string, lt *jsconfig.LegacyTakeover) bool {
	for _, name := range lt.Screens {
		if strings.Contains(args, "SCREEN -dmS "+name) {
			return true
		}
	}
	for _, p := range lt.Processes {
		all := len(p.Includes) > 0
		for _, s := range p.Includes {
			if !strings.Contains(args, s) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// stopLegacy quits the configured screen sessions and stops the matched
// processes: SIGTERM each, SIGKILL what is left after the force-stop
// timeout, then makes sure nothing matches any more.
func stopLegacy(lt *jsconfig.LegacyTakeover) (int, error) {
	for _, name := range lt.Screens {
		_ = exec.Command("screen", "-S", name, "-X", "quit").Run() // outcome and a missing screen are ignored
	}
	rows, err := processTable()
	if err != nil {
		return 0, err
	}
	var signalled []procRow
	for _, r := range legacySelection(rows, lt) {
		switch err := syscall.Kill(r.pid, syscall.SIGTERM); {
		case errors.Is(err, syscall.ESRCH):
		case err != nil:
			return 0, fmt.Errorf("kill %s", errnoName(err))
		default:
			signalled = append(signalled, r)
		}
	}
	if len(signalled) > 0 {
		deadline := time.Now().Add(lt.ForceStopTimeoutMs.Duration())
		for anyAlive(signalled) && time.Now().Before(deadline) {
			time.Sleep(legacyPoll)
		}
		for _, r := range signalled {
			if stillRunning(r) { // never a later process that reused the pid
				_ = syscall.Kill(r.pid, syscall.SIGKILL)
			}
		}
	}
	// SIGKILL takes effect asynchronously: give the kernel a moment.
	confirm := time.Now().Add(legacyConfirm)
	for {
		rows, err := processTable()
		if err != nil {
			return 0, err
		}
		left := legacySelection(rows, lt)
		if len(left) == 0 {
			return len(signalled), nil
		}
		if time.Now().After(confirm) {
			lines := make([]string, len(left))
			for i, r := range left {
				lines[i] = strconv.Itoa(r.pid) + " " + r.args
			}
			return 0, errors.New("Refusing Rollbridge deploy while legacy processes are still running:\n" + strings.Join(lines, "\n"))
		}
		time.Sleep(legacyPoll)
	}
}

func anyAlive(rows []procRow) bool {
	for _, r := range rows {
		if stillRunning(r) {
			return true
		}
	}
	return false
}

// stillRunning reports whether the process of the row still runs.
func stillRunning(r procRow) bool {
	t, ok := runtime.StartTime(r.pid)
	return ok && (r.startTime == 0 || t == r.startTime)
}

func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}
