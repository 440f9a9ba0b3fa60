package engine

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/rollbridge/rollbridge/engine/control"
	"golang.org/x/sys/unix"
)

// The daemon's open-files limit. Go programs raise their soft
// RLIMIT_NOFILE at start-up to one below the hard limit and give every
// process they start the original soft limit back (see syscall's
// rlimit.go), so the daemon may hold as many connections as the hard
// limit allows while the applications it starts keep the limit they
// would have had without it (docs/troubleshooting.md, "Too many open
// files"). doctor reports both limits.

// FileLimits is a process's RLIMIT_NOFILE and how many descriptors it has
// open (-1 when unknown).
type FileLimits struct {
	Soft, Hard uint64 // unix.RLIM_INFINITY for "unlimited"
	Open       int
}

// processFileLimits reads "Max open files" from /proc/<pid>/limits and
// counts /proc/<pid>/fd.
func processFileLimits(pid int) (FileLimits, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return FileLimits{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			break
		}
		soft, err1 := parseLimit(fields[0])
		hard, err2 := parseLimit(fields[1])
		if err1 != nil || err2 != nil {
			break
		}
		l := FileLimits{Soft: soft, Hard: hard, Open: -1}
		if entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
			l.Open = len(entries)
		}
		return l, nil
	}
	return FileLimits{}, fmt.Errorf("no open-files limit in /proc/%d/limits", pid)
}

func parseLimit(s string) (uint64, error) {
	if s == "unlimited" {
		return unix.RLIM_INFINITY, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func limitText(n uint64) string {
	if n == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(n, 10)
}

// fileLimitCheck is doctor's "open files" line: the running daemon's
// limits and use, or, without a daemon, what one started from here could
// use. It fails only when a running daemon is close to its limit.
func fileLimitCheck(ep control.Endpoint, daemonRunning bool) Check {
	const name = "open files"
	if daemonRunning {
		pid, err := control.DaemonPID(ep)
		if err != nil {
			return Check{Name: name, OK: true, Detail: fmt.Sprintf("could not identify the daemon's process (%v); its limits are unknown", err)}
		}
		l, err := processFileLimits(pid)
		if err != nil {
			return Check{Name: name, OK: true, Detail: fmt.Sprintf("could not read the daemon's limits (%v)", err)}
		}
		detail := fmt.Sprintf("daemon (pid %d): soft limit %s, hard limit %s", pid, limitText(l.Soft), limitText(l.Hard))
		if l.Open < 0 {
			return Check{Name: name, OK: true, Detail: detail}
		}
		detail += fmt.Sprintf(", %d open", l.Open)
		if l.Soft != unix.RLIM_INFINITY && uint64(l.Open)*10 >= l.Soft*9 {
			return Check{Name: name, OK: false, Detail: detail + " — close to the limit: new connections will wait until descriptors are freed; raise LimitNOFILE= in the systemd unit (or ulimit -Hn) and restart the daemon"}
		}
		return Check{Name: name, OK: true, Detail: detail}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return Check{Name: name, OK: true, Detail: fmt.Sprintf("could not read the limit (%v)", err)}
	}
	return Check{Name: name, OK: true, Detail: fmt.Sprintf("no daemon running; a daemon started here raises its soft limit to just below the hard limit of %s (the processes it starts keep the soft limit it was started with)", limitText(lim.Max))}
}
