package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrNotRunning is CheckPortOwner's answer for a process group with no
// live member: whatever answered on its port, it was not the process.
var ErrNotRunning = errors.New("it is not running")

// PortOwnerError is a TCP port that a user other than the process's own
// listens on.
type PortOwnerError struct {
	Port int
	UID  uint32   // the listening socket's owner
	UIDs []uint32 // the users the process group runs as
}

func (e *PortOwnerError) Error() string {
	users := make([]string, len(e.UIDs))
	for i, u := range e.UIDs {
		users[i] = strconv.FormatUint(uint64(u), 10)
	}
	return fmt.Sprintf("port %d is listened on by a socket of uid %d, while the process runs as uid %s", e.Port, e.UID, strings.Join(users, ", "))
}

// CheckPortOwner verifies that the TCP listeners on port belong to the
// process group pgid: every socket listening on it (IPv4 and IPv6) must
// be owned by a user that a live member of the group runs as, or by
// root (a listener a root service opens for the process, such as
// docker-proxy). Another local user who binds a release's port before its
// web process does would otherwise pass its health check and receive the
// production traffic. A group without a live member gives ErrNotRunning.
// When /proc/net cannot be read or shows no listener (another network
// namespace), nothing can be checked and the answer is nil.
func CheckPortOwner(pgid, port int) error {
	members, ok := newGroupScanner(pgid).members()
	if !ok {
		return nil
	}
	uids := map[uint32]bool{}
	var list []uint32 // the group's users, for the message
	for _, m := range members {
		if m.state == 'Z' || m.state == 'X' {
			continue
		}
		for _, u := range processUIDs(m.pid) {
			if !uids[u] {
				uids[u] = true
				list = append(list, u)
			}
		}
	}
	uids[0] = true
	if !anyLive(members) {
		return ErrNotRunning
	}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, uid := range tcpListenerUIDs(file, port) {
			if !uids[uid] {
				return &PortOwnerError{Port: port, UID: uid, UIDs: list}
			}
		}
	}
	return nil
}

func anyLive(members []groupMember) bool {
	for _, m := range members {
		if m.state != 'Z' && m.state != 'X' {
			return true
		}
	}
	return false
}

// processUIDs returns the real, effective, saved and filesystem uids of
// pid (the Uid line of /proc/<pid>/status).
func processUIDs(pid int) []uint32 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		var out []uint32
		for _, f := range bytes.Fields(rest) {
			if u, err := strconv.ParseUint(string(f), 10, 32); err == nil {
				out = append(out, uint32(u))
			}
		}
		return out
	}
	return nil
}

// tcpListenerUIDs lists the owners of the sockets in LISTEN state on
// port in a /proc/net/tcp-style table.
func tcpListenerUIDs(file string, port int) []uint32 {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []uint32
	sc := bufio.NewScanner(f)
	sc.Scan() // the heading
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
			continue
		}
		if uid, err := strconv.ParseUint(fields[7], 10, 32); err == nil {
			out = append(out, uint32(uid))
		}
	}
	return out
}
