package runtime

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/process"
	"golang.org/x/sys/unix"
)

// pageSize converts /proc's RSS in pages to bytes.
var pageSize = int64(os.Getpagesize())

// groupMember is a process found in a process group.
type groupMember struct {
	pid      int
	state    byte   // R, S, D, Z, X, …
	comm     string // the name /proc/<pid>/comm holds
	rssBytes int64  // resident set size: the rss pages of /proc/<pid>/stat (the same figure as VmRSS)
}

// procStat is what rollbridge reads from /proc/<pid>/stat.
type procStat struct {
	comm      string
	state     byte
	pgrp, sid int
	rssPages  int64
	startTime uint64 // clock ticks after boot
}

// parseStat parses /proc/<pid>/stat: comm is between the first "(" and the
// last ")", since a process name may itself contain parentheses.
func parseStat(data []byte) (procStat, bool) {
	open := bytes.IndexByte(data, '(')
	closing := bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return procStat{}, false
	}
	f := bytes.Fields(data[closing+1:])
	// After the name: state(0) ppid(1) pgrp(2) session(3) … rss(21).
	if len(f) < 22 || len(f[0]) != 1 {
		return procStat{}, false
	}
	pgrp, err1 := strconv.Atoi(string(f[2]))
	sid, err2 := strconv.Atoi(string(f[3]))
	rss, err3 := strconv.ParseInt(string(f[21]), 10, 64)
	start, err4 := strconv.ParseUint(string(f[19]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return procStat{}, false
	}
	return procStat{comm: string(data[open+1 : closing]), state: f[0][0], pgrp: pgrp, sid: sid, rssPages: rss, startTime: start}, true
}

// StartTime returns the start time of pid in clock ticks after boot
// (field 22 of /proc/<pid>/stat): with the pid it names one process for
// good, since a recycled pid starts later. ok is false when the process
// does not exist (or is a zombie or dead already).
func StartTime(pid int) (ticks uint64, ok bool) {
	_, ticks, ok = Identity(pid)
	return ticks, ok
}

// readProcFile reads a small /proc file into buf with plain system calls:
// os.ReadFile's stat and poller registration double the cost of a scan.
func readProcFile(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

// fullScanEvery bounds how long an outsider stays cached: every so many
// scans the whole of /proc is read again.
const fullScanEvery = 12

// groupScanner lists the members of one process group from /proc. A
// process outside the group's session can never join the group (setpgid
// only moves a process within its own session), so such pids are
// remembered and not read again until they disappear or the next full
// scan; a sample then costs about one read per member, not one per
// process on the host.
type groupScanner struct {
	pgid int

	mu        sync.Mutex
	outsiders map[int32]bool
	scans     int
	buf       []byte
}

func newGroupScanner(pgid int) *groupScanner {
	return &groupScanner{pgid: pgid, outsiders: map[int32]bool{}, buf: make([]byte, 1024)}
}

// members lists the group sorted by pid, zombies included. ok is false
// when /proc cannot be listed.
func (g *groupScanner) members() (members []groupMember, ok bool) {
	pids, err := process.Pids()
	if err != nil {
		return nil, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.scans++
	if g.scans%fullScanEvery == 0 {
		clear(g.outsiders)
	}
	listed := make(map[int32]bool, len(g.outsiders))
	for _, p := range pids {
		if g.outsiders[p] {
			listed[p] = true
			continue
		}
		data, err := readProcFile("/proc/"+strconv.Itoa(int(p))+"/stat", g.buf)
		if err != nil {
			continue // exited meanwhile
		}
		st, ok := parseStat(data)
		switch {
		case !ok:
		case st.pgrp == g.pgid:
			members = append(members, groupMember{pid: int(p), state: st.state, comm: st.comm, rssBytes: st.rssPages * pageSize})
		case st.sid != g.pgid:
			g.outsiders[p] = true
			listed[p] = true
		}
	}
	// A pid that vanished may come back as a new process: forget it.
	for p := range g.outsiders {
		if !listed[p] {
			delete(g.outsiders, p)
		}
	}
	return members, true
}

// alive reports whether the group has a member that is neither a zombie
// nor dead. Without /proc it asks the kernel with kill(-pgid, 0).
func (g *groupScanner) alive() bool {
	if g.pgid <= 0 {
		return false
	}
	if errors.Is(syscall.Kill(-g.pgid, 0), syscall.ESRCH) {
		return false // no member at all, not even a zombie
	}
	members, ok := g.members()
	if !ok {
		return true
	}
	for _, m := range members {
		if m.state != 'Z' && m.state != 'X' {
			return true
		}
	}
	return false
}

// groupAlive is a one-off alive check.
func groupAlive(pgid int) bool { return newGroupScanner(pgid).alive() }

// GroupResidentBytes is the resident memory of the members of process
// group pgid, zombies excluded.
func GroupResidentBytes(pgid int) int64 {
	members, _ := newGroupScanner(pgid).members()
	var total int64
	for _, m := range members {
		if m.state != 'Z' && m.state != 'X' {
			total += m.rssBytes
		}
	}
	return total
}

// GroupAlive reports whether process group pgid has a member that is
// neither a zombie nor dead.
func GroupAlive(pgid int) bool { return groupAlive(pgid) }

// Identity returns the process group and the start time (clock ticks
// after boot) of pid, from /proc/<pid>/stat. ok is false when the
// process does not exist, or is a zombie or dead already.
func Identity(pid int) (pgid int, startTicks uint64, ok bool) {
	if pid <= 0 {
		return 0, 0, false
	}
	data, err := readProcFile("/proc/"+strconv.Itoa(pid)+"/stat", make([]byte, 1024))
	if err != nil {
		return 0, 0, false
	}
	st, ok := parseStat(data)
	if !ok || st.state == 'Z' || st.state == 'X' {
		return 0, 0, false
	}
	return st.pgrp, st.startTime, true
}

// clockTicks is USER_HZ, the unit of /proc start times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// StartedAt turns a /proc start time into wall-clock time: the boot time
// of /proc/stat (btime) plus the ticks. btime is whole seconds, truncated,
// so the result may be up to a second early. ok is false without /proc.
func StartedAt(startTicks uint64) (time.Time, bool) {
	data, err := os.ReadFile("/proc/stat") // its interrupt line can be long
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		if rest, found := bytes.CutPrefix(line, []byte("btime ")); found {
			secs, err := strconv.ParseInt(string(bytes.TrimSpace(rest)), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			boot := time.Unix(secs, 0)
			return boot.Add(time.Duration(startTicks) * time.Second / clockTicks), true
		}
	}
	return time.Time{}, false
}
