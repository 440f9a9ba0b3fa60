package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
	"golang.org/x/sys/unix"
)

// Orphan is a managed process recorded in a state file: one of its
// processes, or a lifecycle hook that was running.
type Orphan struct {
	ID        string
	Pid       int
	ReleaseID *string // nil for services and singletons
	// Pgid and StartTime are recorded by the Go daemon only (0: unknown).
	Pgid      int
	StartTime uint64
	// Recorded is when an entry without a start time was written: the
	// modification time of the file it came from, or the recordedAt an
	// earlier Go daemon kept for it. Zero when unknown.
	Recorded time.Time
}

// orphanIdentity is what /proc says about a recorded process now.
type orphanIdentity int

const (
	// identityGone: no such process, or (with a recorded start time) a
	// process that started at another time: the recorded one is gone.
	identityGone orphanIdentity = iota
	// identityConfirmed: the same process, in the recorded process group.
	identityConfirmed
	// identityOtherGroup: the pid is alive but not in the recorded
	// group (or, without a recorded group, leads none): most likely a
	// recycled pid, never signalled.
	identityOtherGroup
	// identityUnconfirmed: no start time recorded (a Node.js state file)
	// and the process did not provably start before the record was
	// written: it may be an unrelated process, never signalled.
	identityUnconfirmed
)

// recordMargin covers the rounding of the kernel's boot time: a process
// start computed from /proc may be up to a second early.
const recordMargin = time.Second

// identity checks the recorded process against /proc: with a start time,
// the pid must have started then and be in the recorded process group;
// without one, it must lead its own group and have started before the
// entry was written.
func (o Orphan) identity() orphanIdentity {
	pgrp, start, ok := runtime.Identity(o.Pid)
	if !ok {
		return identityGone
	}
	if o.StartTime != 0 {
		if start != o.StartTime {
			return identityGone
		}
		want := o.Pgid
		if want == 0 {
			want = o.Pid
		}
		if pgrp != want {
			return identityOtherGroup
		}
		return identityConfirmed
	}
	if pgrp != o.Pid {
		return identityOtherGroup
	}
	if o.Recorded.IsZero() {
		return identityUnconfirmed
	}
	began, ok := runtime.StartedAt(start)
	if !ok || !began.Add(recordMargin).Before(o.Recorded) {
		return identityUnconfirmed
	}
	return identityConfirmed
}

// Alive reports whether the recorded process still runs: the pid exists
// and, when the file recorded a start time, the process with that pid
// started at that time. A pid recycled by an unrelated process is
// therefore not alive.
func (o Orphan) Alive() bool { return o.identity() != identityGone }

// confirmed upgrades an entry without a start time whose identity is
// confirmed to a full one (its current start time and group), so a later
// reader does not depend on file times any more.
func (o Orphan) confirmed() Orphan {
	if o.StartTime != 0 || o.identity() != identityConfirmed {
		return o
	}
	if pgrp, start, ok := runtime.Identity(o.Pid); ok {
		o.Pgid, o.StartTime, o.Recorded = pgrp, start, time.Time{}
	}
	return o
}

// releaseValue is the orphan's release id as JSON shows it: null for a
// service or singleton.
func (o Orphan) releaseValue() any {
	if o.ReleaseID == nil {
		return nil
	}
	return *o.ReleaseID
}

// object is the orphan as status shows it, {id, pid, releaseId}; the
// state file adds pgid, recordedAt and startTime when they are known.
func (o Orphan) object(state bool) jsconfig.Object {
	release := o.releaseValue()
	obj := jsconfig.Object{{Key: "id", Value: o.ID}}
	if state && o.Pgid > 0 {
		obj = append(obj, jsconfig.Field{Key: "pgid", Value: o.Pgid})
	}
	obj = append(obj, jsconfig.Field{Key: "pid", Value: o.Pid})
	if state && o.StartTime == 0 && !o.Recorded.IsZero() {
		obj = append(obj, jsconfig.Field{Key: "recordedAt", Value: o.Recorded.UTC().Format(time.RFC3339Nano)})
	}
	obj = append(obj, jsconfig.Field{Key: "releaseId", Value: release})
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

// UntrustedStateError refuses a state file that someone other than root
// or the reading user could have written: acting on its pids as root
// would let that user choose which processes root signals.
type UntrustedStateError struct {
	Path   string
	Reason string // "it is owned by uid 65534", "it is a symbolic link", …
}

func (e *UntrustedStateError) Error() string {
	owner := "root"
	if uid := os.Geteuid(); uid != 0 {
		owner = "root or uid " + strconv.Itoa(uid) + " (the user running rollbridge)"
	}
	return fmt.Sprintf("Refusing to use the state file %s: %s. Only a regular file owned by %s and not writable by group or others is trusted, because rollbridge signals the processes it lists. Inspect it: if it is genuine, fix its owner and mode (chown %d %s && chmod 600 %s); otherwise remove it.",
		e.Path, e.Reason, owner, os.Geteuid(), e.Path, e.Path)
}

// maxStateFile bounds what is read of a state file.
const maxStateFile = 64 << 20

// trustReason says why a file with these attributes is not trusted, or "".
func trustReason(mode fs.FileMode, uid uint32) string {
	switch {
	case mode&fs.ModeSymlink != 0:
		return "it is a symbolic link"
	case !mode.IsRegular():
		return "it is not a regular file"
	case uid != 0 && int(uid) != os.Geteuid():
		return "it is owned by uid " + strconv.FormatUint(uint64(uid), 10)
	case mode.Perm()&0o022 != 0:
		return fmt.Sprintf("it is writable by group or others (mode %04o)", mode.Perm())
	}
	return ""
}

// readTrusted reads a state file after checking that root or the reading
// user owns it and nobody else can write it: first with Lstat (a symlink
// is refused), then on the opened descriptor (O_NOFOLLOW, fstat), so what
// is read is what was checked. A missing file returns (nil, zero, nil).
func readTrusted(path string) ([]byte, time.Time, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, &ErrStateUnreadable{err}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if reason := trustReason(fi.Mode(), st.Uid); reason != "" {
			return nil, time.Time{}, &UntrustedStateError{Path: path, Reason: reason}
		}
	}
	// O_NONBLOCK: a FIFO swapped in after the Lstat must not block the open.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, time.Time{}, &UntrustedStateError{Path: path, Reason: "it is a symbolic link"}
	case errors.Is(err, unix.ENOENT):
		return nil, time.Time{}, nil
	case err != nil:
		return nil, time.Time{}, &ErrStateUnreadable{&fs.PathError{Op: "open", Path: path, Err: err}}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, time.Time{}, &ErrStateUnreadable{err}
	}
	mode := fs.FileMode(st.Mode & 0o777)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		mode |= fs.ModeIrregular
	}
	if reason := trustReason(mode, st.Uid); reason != "" {
		return nil, time.Time{}, &UntrustedStateError{Path: path, Reason: reason}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, time.Time{}, &ErrStateUnreadable{err}
	}
	if len(data) > maxStateFile {
		return nil, time.Time{}, &ErrStateUnreadable{fmt.Errorf("the file is larger than %d MiB", maxStateFile>>20)}
	}
	return data, time.Unix(st.Mtim.Unix()), nil
}

// stateDoc is one parsed state file.
type stateDoc struct {
	entries []Orphan
	// writerPid and writerStart identify the daemon that wrote the file
	// (0 when it did not say, as the Node.js rollbridge never does).
	writerPid   int
	writerStart uint64
	// traffic is the file's "traffic" member as decoded (nil when absent
	// or null: requests flowed normally, or the Node.js rollbridge wrote
	// it); restoreTraffic reads it.
	traffic any
	// raw is the file as read, for re-adoption (parseSavedState).
	raw []byte
}

// readStateDoc reads and parses one state file. A missing file is no
// state (nil, nil); one that cannot be read or parsed is no state too,
// with an *ErrStateUnreadable saying why; one that is not trusted gives
// an *UntrustedStateError and no entries. A file of an unexpected shape
// yields no processes at all, as with the Node.js rollbridge.
func readStateDoc(path string) (*stateDoc, error) {
	data, mtime, err := readTrusted(path)
	if err != nil || data == nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		if len(data) == 0 {
			return nil, &ErrStateUnreadable{errors.New("the file is empty")}
		}
		return nil, &ErrStateUnreadable{err}
	}
	out := &stateDoc{raw: data}
	list, ok := stateCandidates(doc)
	if ok {
		for i := range list {
			if list[i].StartTime == 0 && (list[i].Recorded.IsZero() || mtime.Before(list[i].Recorded)) {
				list[i].Recorded = mtime
			}
		}
		out.entries = list
	}
	if root, ok := doc.(map[string]any); ok {
		out.traffic = root["traffic"]
		if w, ok := root["writer"].(map[string]any); ok {
			out.writerPid, _ = pidOf(w["pid"])
			if t, ok := w["startTime"].(float64); ok && t > 0 && t == math.Trunc(t) {
				out.writerStart = uint64(t)
			}
		}
	}
	return out, nil
}

// siblingInfix names the state files of a daemon that takes part in a
// takeover but does not own the state file: a candidate until it owns the
// control socket, an owner once it retired. "<statePath>.takeover-<pid>".
const siblingInfix = ".takeover-"

func siblingPath(statePath string, pid int) string {
	return statePath + siblingInfix + strconv.Itoa(pid)
}

// siblingFiles lists the sibling files next to statePath, oldest pid
// first. Temporary files of a write in progress are not siblings.
func siblingFiles(statePath string) []string {
	dir, base := filepath.Split(statePath)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	type sib struct {
		path string
		pid  int
	}
	var list []sib
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), base+siblingInfix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(rest)
		if err != nil || pid <= 0 || strconv.Itoa(pid) != rest {
			continue
		}
		list = append(list, sib{filepath.Join(dir, e.Name()), pid})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].pid < list[j].pid })
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.path
	}
	return out
}

// writerRunning reports whether the daemon that wrote a sibling file
// still runs: it then still owns the processes it lists (a candidate in
// the middle of a takeover, a retired owner draining) and they are not
// orphans yet.
func (d *stateDoc) writerRunning() bool {
	if d.writerPid <= 0 || d.writerStart == 0 {
		return false
	}
	_, start, ok := runtime.Identity(d.writerPid)
	return ok && start == d.writerStart
}

// stateFile is one file of a state: the main file or a sibling.
type stateFile struct {
	path    string
	sibling bool
	entries []Orphan
	traffic any // the "traffic" member, see stateDoc
	raw     []byte
	// writer is the pid of the daemon that wrote the file when it still
	// runs, else 0.
	writer int
	err    error // *ErrStateUnreadable or *UntrustedStateError
}

// readStateFiles reads the state file and its siblings whose writer no
// longer runs. Missing files are left out; files that are unreadable or
// untrusted are listed with their error and no entries.
func readStateFiles(statePath string) []stateFile {
	return readStatePaths(append([]string{statePath}, siblingFiles(statePath)...), statePath)
}

// readStatePaths reads the given files of the state at statePath.
func readStatePaths(paths []string, statePath string) []stateFile {
	var out []stateFile
	for _, path := range paths {
		doc, err := readStateDoc(path)
		if doc == nil && err == nil {
			continue
		}
		f := stateFile{path: path, sibling: path != statePath, err: err}
		if doc != nil {
			if f.sibling && doc.writerRunning() {
				continue
			}
			f.entries = doc.entries
			f.traffic = doc.traffic
			f.raw = doc.raw
			if doc.writerRunning() {
				f.writer = doc.writerPid
			}
		}
		out = append(out, f)
	}
	return out
}

// ReadState returns the processes recorded in the state file and in the
// sibling files of takeovers whose writer is gone, and the files that
// were read (to remove once everything in them is stopped). A file that
// is not trusted fails the whole read: nothing of any file is used. One
// that cannot be parsed counts as empty.
func ReadState(statePath string) ([]Orphan, []string, error) {
	list, files, _, err := readState(statePath)
	return list, files, err
}

// readState is ReadState that also returns the main file's "traffic"
// member (see stateDoc), read in the same pass.
func readState(statePath string) (list []Orphan, files []string, traffic any, err error) {
	for _, f := range readStateFiles(statePath) {
		var untrusted *UntrustedStateError
		if errors.As(f.err, &untrusted) {
			return nil, nil, nil, f.err
		}
		list = appendNew(list, f.entries)
		files = append(files, f.path)
		if !f.sibling {
			traffic = f.traffic
		}
	}
	return list, files, traffic, nil
}

// appendNew appends the entries of another file, leaving out processes
// an earlier file already listed (a daemon that died between writing the
// state file and removing its sibling leaves both).
func appendNew(list, more []Orphan) []Orphan {
	n := len(list)
	for _, o := range more {
		dup := false
		for _, k := range list[:n] {
			if k.Pid == o.Pid && k.StartTime == o.StartTime {
				dup = true
				break
			}
		}
		if !dup {
			list = append(list, o)
		}
	}
	return list
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

// withIdentity copies the Go daemon's pgid, startTime and recordedAt,
// when recorded.
func withIdentity(o Orphan, m map[string]any) Orphan {
	if g, ok := pidOf(m["pgid"]); ok {
		o.Pgid = g
	}
	if t, ok := m["startTime"].(float64); ok && t > 0 && t == math.Trunc(t) {
		o.StartTime = uint64(t)
	}
	if s, ok := m["recordedAt"].(string); ok && o.StartTime == 0 {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			o.Recorded = t
		}
	}
	return o
}
