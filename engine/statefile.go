package engine

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"syscall"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// Orphan is a managed process recorded in a state file (daemon.md §8.4).
type Orphan struct {
	ID        string
	Pid       int
	ReleaseID *string // nil for services and singletons
	// Pgid and StartTime are recorded by the Go daemon only (0: unknown).
	Pgid      int
	StartTime uint64
}

// Alive reports whether the recorded process still runs: the pid exists
// (signal 0 is delivered, or refused with EPERM) and, when the file
// recorded a start time, the process with that pid started at that time.
// A pid recycled by an unrelated process is therefore not alive.
func (o Orphan) Alive() bool {
	if o.Pid <= 0 {
		return false
	}
	if err := syscall.Kill(o.Pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if o.StartTime == 0 {
		return true // a Node.js state file: pid liveness alone
	}
	ticks, ok := runtime.StartTime(o.Pid)
	return ok && ticks == o.StartTime
}

// object is the orphan as status shows it, {id, pid, releaseId}; the
// state file adds pgid and startTime when they are known.
func (o Orphan) object(state bool) jsconfig.Object {
	var release any
	if o.ReleaseID != nil {
		release = *o.ReleaseID
	}
	obj := jsconfig.Object{{Key: "id", Value: o.ID}}
	if state && o.Pgid > 0 {
		obj = append(obj, jsconfig.Field{Key: "pgid", Value: o.Pgid})
	}
	obj = append(obj, jsconfig.Field{Key: "pid", Value: o.Pid}, jsconfig.Field{Key: "releaseId", Value: release})
	if state && o.StartTime > 0 {
		obj = append(obj, jsconfig.Field{Key: "startTime", Value: o.StartTime})
	}
	return obj
}

// ErrStateUnreadable wraps the reason a state file that exists could not
// be used; it then counts as "no state".
type ErrStateUnreadable struct{ Err error }

func (e *ErrStateUnreadable) Error() string { return e.Err.Error() }
func (e *ErrStateUnreadable) Unwrap() error { return e.Err }

// ReadStateFile returns the processes a state file records, in the order
// of daemon.md §8.4: its orphans, each release's processes, then services
// and singletons. Liveness is not checked here. A missing file is no
// state (nil, nil); one that cannot be read or parsed is no state too,
// with an *ErrStateUnreadable saying why. A file of an unexpected shape
// yields no processes at all, as with the Node.js rollbridge.
func ReadStateFile(path string) ([]Orphan, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &ErrStateUnreadable{err}
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		if len(data) == 0 {
			return nil, &ErrStateUnreadable{errors.New("the file is empty")}
		}
		return nil, &ErrStateUnreadable{err}
	}
	list, ok := stateCandidates(doc)
	if !ok {
		return nil, nil
	}
	return list, nil
}

// LiveOrphans keeps the entries whose process is still alive.
func LiveOrphans(list []Orphan) []Orphan {
	var live []Orphan
	for _, o := range list {
		if o.Alive() {
			live = append(live, o)
		}
	}
	return live
}

// stateCandidates walks the snapshot like the reference's reader: a
// property access on a missing or null value fails the whole read.
func stateCandidates(doc any) ([]Orphan, bool) {
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, false
	}
	var out []Orphan
	if orphans, isList := root["orphans"].([]any); isList {
		for _, e := range orphans {
			m, _ := e.(map[string]any)
			id, idOK := m["id"].(string)
			pid, pidOK := pidOf(m["pid"])
			if !idOK || !pidOK {
				continue
			}
			var release *string
			switch r := m["releaseId"].(type) {
			case string:
				release = &r
			case nil:
				if _, present := m["releaseId"]; !present {
					continue
				}
			default:
				continue
			}
			out = append(out, withIdentity(Orphan{ID: id, Pid: pid, ReleaseID: release}, m))
		}
	}
	releases, ok := root["releases"].([]any)
	if !ok {
		return nil, false
	}
	for _, r := range releases {
		rm, ok := r.(map[string]any)
		if !ok {
			return nil, false
		}
		procs, ok := rm["processes"].([]any)
		if !ok {
			return nil, false
		}
		var release *string
		if id, ok := rm["releaseId"].(string); ok {
			release = &id
		}
		for _, p := range procs {
			if p == nil {
				return nil, false
			}
			pm, _ := p.(map[string]any)
			pid, ok := pidOf(pm["pid"])
			if !ok {
				continue
			}
			id, _ := pm["id"].(string)
			out = append(out, withIdentity(Orphan{ID: id, Pid: pid, ReleaseID: release}, pm))
		}
	}
	for _, key := range []string{"services", "singletons"} {
		entries, ok := root[key].([]any)
		if !ok {
			return nil, false
		}
		for _, e := range entries {
			em, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			pm, ok := em["process"].(map[string]any)
			if !ok {
				return nil, false
			}
			pid, ok := pidOf(pm["pid"])
			if !ok {
				continue
			}
			id, _ := em["id"].(string)
			out = append(out, withIdentity(Orphan{ID: id, Pid: pid}, pm))
		}
	}
	return out, true
}

// pidOf accepts a JSON number that is a whole, positive pid.
func pidOf(v any) (int, bool) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || f < 1 || f > math.MaxInt32 {
		return 0, false
	}
	return int(f), true
}

// withIdentity copies the Go daemon's pgid and startTime, when recorded.
func withIdentity(o Orphan, m map[string]any) Orphan {
	if g, ok := pidOf(m["pgid"]); ok {
		o.Pgid = g
	}
	if t, ok := m["startTime"].(float64); ok && t > 0 && t == math.Trunc(t) {
		o.StartTime = uint64(t)
	}
	return o
}
