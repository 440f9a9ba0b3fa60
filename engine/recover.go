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
// (docs/cli.md#recover).
type Recovery struct {
	Found   []Orphan // live orphans, in state-file order
	Stopped []Orphan
	Skipped []Orphan // alive, but not in the recorded process group: pid likely recycled
	// Unconfirmed are alive but recorded without a start time (a Node.js
	// state file) and not provably started before the record was written:
	// they may be unrelated processes, so they are never signalled.
	Unconfirmed []Orphan
	Survivors   []Orphan
	Cleared     bool // the state file (and the siblings read) were removed
	// KeptTraffic is the state ("paused", "pause-expired", "maintenance")
	// of the pause or maintenance the cleared state file recorded and
	// still records for the next daemon, or "".
	KeptTraffic string
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

// Recover finds the live orphans of plan's state file (and of the
// sibling files of takeovers whose daemon is gone) and, with force,
// stops each one's process group whose identity is confirmed: SIGTERM,
// SIGKILL after proxy.forceStopTimeoutMs. The files are removed only when
// nothing survived and nothing was left unconfirmed. It refuses to run
// while anything answers on the control socket, and acts on nothing when
// a state file is not trusted.
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
	list, files, traffic, err := readState(plan.StatePath)
	if err != nil {
		return nil, err
	}
	rec := &Recovery{}
	identities := map[int]orphanIdentity{}
	for i, o := range list {
		if id := o.identity(); id != identityGone {
			rec.Found = append(rec.Found, o)
			identities[len(rec.Found)-1] = id
			if id == identityUnconfirmed {
				rec.Unconfirmed = append(rec.Unconfirmed, list[i])
			}
		}
	}
	if !force {
		return rec, nil
	}
	timeout := plan.Proxy.ForceStopTimeoutMs.Duration()
	for i, o := range rec.Found {
		switch identities[i] {
		case identityUnconfirmed:
			continue
		case identityOtherGroup:
			rec.Skipped = append(rec.Skipped, o)
			continue
		}
		switch stopOrphan(o, timeout) {
		case orphanStopped:
			rec.Stopped = append(rec.Stopped, o)
		case orphanSkipped:
			rec.Skipped = append(rec.Skipped, o)
		default:
			rec.Survivors = append(rec.Survivors, o)
		}
	}
	if len(rec.Survivors) == 0 && len(rec.Unconfirmed) == 0 {
		// An operator's pause or maintenance is no leftover of the crash:
		// the file keeps it (and nothing else) for the next daemon.
		kept, state := trafficOnlyState(traffic)
		if kept != nil {
			if err := replaceFile(plan.StatePath, kept); err != nil {
				return rec, err
			}
			rec.KeptTraffic = state
		}
		for _, path := range append(files, plan.StatePath) {
			if path == plan.StatePath && kept != nil {
				continue
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return rec, jsconfig.NodeError(err, "unlink", path)
			}
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

// stopOrphan stops the group of an orphan whose identity was confirmed:
// SIGTERM, then SIGKILL when the recorded process or any other member of
// its group is still there after the timeout. The identity is checked
// again right before the first signal; a process that no longer matches
// is left alone and reported as skipped.
func stopOrphan(o Orphan, timeout time.Duration) orphanOutcome {
	pgid := o.Pgid
	if pgid == 0 {
		pgid = o.Pid
	}
	switch o.identity() {
	case identityGone:
		return orphanStopped
	case identityConfirmed:
	default:
		return orphanSkipped
	}
	switch err := syscall.Kill(-pgid, syscall.SIGTERM); {
	case errors.Is(err, syscall.ESRCH):
		if o.Alive() {
			return orphanSkipped
		}
		return orphanStopped
	case err != nil:
		return orphanSurvived
	}
	if waitGone(o, pgid, timeout) {
		return orphanStopped
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return orphanSurvived
	}
	if waitGone(o, pgid, killConfirm) {
		return orphanStopped
	}
	return orphanSurvived
}

// waitGone polls until the orphan and the rest of its process group are
// gone, or the time is up.
func waitGone(o Orphan, pgid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		if !o.Alive() && !runtime.GroupAlive(pgid) {
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
