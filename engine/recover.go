package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// Recovery is the outcome of stopping a crashed daemon's orphans
// (cli.md §5.2).
type Recovery struct {
	Found     []Orphan // live orphans, in state-file order
	Stopped   []Orphan
	Skipped   []Orphan // alive, but no longer leading their process group
	Survivors []Orphan
	Cleared   bool // the state file was removed
}

// ErrNoStatePath is recover's answer when persistence is off.
var ErrNoStatePath = errors.New("No statePath is configured; set statePath in the config to enable recovery.")

// BusySocketError refuses recovery next to a live daemon.
func BusySocketError(path string) error {
	return fmt.Errorf("A daemon (or another process) is using %s; stop it before recovering — recover is for cleaning up after a crash.", path)
}

// orphanPoll is how often a stopping orphan is checked.
const orphanPoll = 50 * time.Millisecond

// killConfirm bounds the wait after SIGKILL.
const killConfirm = 500 * time.Millisecond

// Recover finds the live orphans of plan's state file and, with force,
// stops each one's process group: SIGTERM, SIGKILL after
// proxy.forceStopTimeoutMs. The state file is removed only when nothing
// survived. It refuses to run while anything answers on the control
// socket.
func Recover(plan *jsconfig.Plan, force bool) (*Recovery, error) {
	if plan.StatePath == "" {
		return nil, ErrNoStatePath
	}
	probe, err := control.Probe(ControlEndpoint(plan.Control))
	var untrusted *control.OwnerError
	if errors.As(err, &untrusted) {
		return nil, err
	}
	if err != nil || probe.Alive {
		return nil, BusySocketError(plan.Control.Path)
	}
	list, _ := ReadStateFile(plan.StatePath)
	rec := &Recovery{Found: LiveOrphans(list)}
	if !force {
		return rec, nil
	}
	timeout := plan.Proxy.ForceStopTimeoutMs.Duration()
	for _, o := range rec.Found {
		switch stopOrphan(o, timeout) {
		case orphanStopped:
			rec.Stopped = append(rec.Stopped, o)
		case orphanSkipped:
			rec.Skipped = append(rec.Skipped, o)
		default:
			rec.Survivors = append(rec.Survivors, o)
		}
	}
	if len(rec.Survivors) == 0 {
		if err := os.Remove(plan.StatePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rec, jsconfig.NodeError(err, "unlink", plan.StatePath)
		}
		rec.Cleared = true
	}
	return rec, nil
}

type orphanOutcome int

const (
	orphanStopped orphanOutcome = iota
	orphanSkipped
	orphanSurvived
)

// stopOrphan stops the group the orphan leads: SIGTERM, then SIGKILL when
// the leader or any other member of its group is still there after the
// timeout. A live pid that leads no group is most likely recycled by an
// unrelated process: it is left alone and reported as skipped.
func stopOrphan(o Orphan, timeout time.Duration) orphanOutcome {
	switch err := syscall.Kill(-o.Pid, syscall.SIGTERM); {
	case errors.Is(err, syscall.ESRCH):
		if o.Alive() {
			return orphanSkipped
		}
		return orphanStopped
	case err != nil:
		return orphanSurvived
	}
	if waitGone(o, timeout) {
		return orphanStopped
	}
	if err := syscall.Kill(-o.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return orphanSurvived
	}
	if waitGone(o, killConfirm) {
		return orphanStopped
	}
	return orphanSurvived
}

// waitGone polls until the orphan and the rest of its process group are
// gone, or the time is up.
func waitGone(o Orphan, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		if !o.Alive() && !runtime.GroupAlive(o.Pid) {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(orphanPoll)
	}
}

// OrphanLabel is "1 orphaned process" or "<n> orphaned processes".
func OrphanLabel(n int) string {
	if n == 1 {
		return "1 orphaned process"
	}
	return fmt.Sprintf("%d orphaned processes", n)
}

// OrphanLines lists orphans as recover prints them.
func OrphanLines(list []Orphan) string {
	var b strings.Builder
	for _, o := range list {
		if o.ReleaseID != nil {
			fmt.Fprintf(&b, "  %s (pid %d, release %s)\n", o.ID, o.Pid, *o.ReleaseID)
		} else {
			fmt.Fprintf(&b, "  %s (pid %d)\n", o.ID, o.Pid)
		}
	}
	return b.String()
}
