package control

import (
	"bufio"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Endpoint is a daemon's control socket as a client sees it: where it is
// and whom the client trusts to run the daemon behind it. Every
// connection made through an Endpoint (Dial, Call, CallWithFiles, Probe)
// first checks that the socket file is a socket owned by a trusted uid,
// and after connecting that the listening process runs as one: otherwise
// any local user who binds the path first (the default is in /tmp) would
// receive the requests of root's CLI and answer them. Trusted are root,
// the caller's effective uid and Owner; the zero value trusts root and
// the caller only.
type Endpoint struct {
	Path string
	// Owner is the uid of control.owner, trusted besides root and the
	// caller's effective uid (the daemon chowns its socket to it). 0 adds
	// nobody.
	Owner int
}

// trusts reports whether a socket owned by, or a daemon running as, uid
// may be talked to.
func (ep Endpoint) trusts(uid uint32) bool {
	return uid == 0 || int(uid) == os.Geteuid() || int(uid) == ep.Owner
}

// trustedList names whom ep trusts, for messages: "root", "you (uid
// 1000)", "control.owner (uid 1001)".
func (ep Endpoint) trustedList() string {
	list := []string{"root"}
	if euid := os.Geteuid(); euid != 0 {
		list = append(list, fmt.Sprintf("you (uid %d)", euid))
	}
	if ep.Owner != 0 && ep.Owner != os.Geteuid() {
		list = append(list, fmt.Sprintf("control.owner (uid %d)", ep.Owner))
	}
	if len(list) == 1 {
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " or " + list[len(list)-1]
}

// OwnerError refuses a control socket that belongs to, or is served by, a
// user the client does not trust.
type OwnerError struct {
	Path string
	UID  uint32
	// Peer is set when the listening process failed the check (its pid is
	// PID); otherwise the socket file's owner did.
	Peer bool
	PID  int32
	ep   Endpoint
}

func (e *OwnerError) Error() string {
	who := DescribeUID(e.UID)
	if e.Peer {
		return fmt.Sprintf(`Refusing to use the control socket %s: the process listening on it (pid %d) runs as %s, and rollbridge only talks to a daemon run by %s. Another local user may be impersonating the daemon. Find that process with "ss -xlp | grep %s" and stop it, remove the socket file and start the daemon again; or, if the daemon really runs as %s, set control.owner to that user.`,
			e.Path, e.PID, who, e.ep.trustedList(), e.Path, who)
	}
	return fmt.Sprintf(`Refusing to use the control socket %s: it is owned by %s, and rollbridge only talks to a socket owned by %s. Another local user may have created it to impersonate the daemon. Check it with "ls -ln %s"; if it is not your daemon's, remove it and start the daemon again; if the daemon really runs as %s, set control.owner to that user.`,
		e.Path, who, e.ep.trustedList(), e.Path, who)
}

// LinkError refuses a symbolic link at the control path: connecting
// through it would let whoever can write its directory point the client
// at any socket.
type LinkError struct{ Path string }

func (e *LinkError) Error() string {
	return fmt.Sprintf("Refusing to use the control socket %s: it is a symbolic link, and rollbridge does not follow links at control.path. Set control.path to the socket itself, or remove the link.", e.Path)
}

// checkFile checks the socket file at ep.Path before connecting: it must
// be a socket (not a link to one) owned by a trusted uid. A missing file
// or directory, and a file that is not a socket, give the DialError
// connect(2) would (ENOENT, ENOTDIR, EACCES, ECONNREFUSED).
func checkFile(ep Endpoint) error {
	fi, err := os.Lstat(ep.Path)
	if err != nil {
		return ConnectError(err, ep.Path)
	}
	switch fi.Mode().Type() {
	case fs.ModeSocket:
	case fs.ModeSymlink:
		return &LinkError{Path: ep.Path}
	default:
		return &DialError{Code: "ECONNREFUSED", Path: ep.Path}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("Cannot tell who owns the control socket %s, so nothing was sent to it. Check it with \"ls -ln %s\".", ep.Path, ep.Path)
	}
	if !ep.trusts(st.Uid) {
		return &OwnerError{Path: ep.Path, UID: st.Uid, ep: ep}
	}
	return nil
}

// checkPeer checks the credentials of the process at the other end of a
// connected control socket (SO_PEERCRED: the process that called listen,
// which for a socket handed over in a takeover is the first owner, the
// same user).
func checkPeer(ep Endpoint, conn net.Conn) error {
	cred, err := peerCredentials(ep, conn)
	if err != nil {
		return err
	}
	if !ep.trusts(cred.Uid) {
		return &OwnerError{Path: ep.Path, UID: cred.Uid, Peer: true, PID: cred.Pid, ep: ep}
	}
	return nil
}

// peerCredentials reads SO_PEERCRED of a connected control socket.
func peerCredentials(ep Endpoint, conn net.Conn) (*unix.Ucred, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%s is not a Unix socket; set control.path to the daemon's socket", ep.Path)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("Cannot tell who runs the daemon at %s (%w), so nothing was sent to it. Check the process listening there with \"ss -xlp | grep %s\".", ep.Path, credErr, ep.Path)
	}
	return cred, nil
}

// DaemonPID returns the pid of the (trusted) process listening on ep.
func DaemonPID(ep Endpoint) (int, error) {
	conn, err := dial(ep, ProbeTimeout)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	cred, err := peerCredentials(ep, conn)
	if err != nil {
		return 0, err
	}
	return int(cred.Pid), nil
}

// dial connects to ep within timeout, checking the socket file before and
// the listening process after the connect; a refused connection is
// closed before anything is written to it.
func dial(ep Endpoint, timeout time.Duration) (net.Conn, error) {
	if err := checkFile(ep); err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("unix", ep.Path, timeout)
	if err != nil {
		return nil, ConnectError(err, ep.Path)
	}
	if err := checkPeer(ep, conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// DescribeUID names a user for a message: "uid 65534 (nobody)", or
// "uid 1234" when /etc/passwd does not know it.
func DescribeUID(uid uint32) string {
	who := "uid " + strconv.FormatUint(uint64(uid), 10)
	if name := userName(uid); name != "" {
		who += " (" + name + ")"
	}
	return who
}

// userName is the name /etc/passwd gives uid, "" when it has none. Only
// the local file is read, as for control.owner.
func userName(uid uint32) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return ""
	}
	defer f.Close()
	want := strconv.FormatUint(uint64(uid), 10)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[2] == want && fields[0] != "" && !strings.HasPrefix(fields[0], "#") {
			return fields[0]
		}
	}
	return ""
}
