// Package sdnotify is the client side of systemd's notify and file
// descriptor store protocol: readiness messages (sd_notify(3)), handing
// descriptors to the service manager to keep across a restart
// (FDSTORE=1, FDSTOREREMOVE=1) and taking them back at the next start
// (sd_listen_fds(3), LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES).
//
// Every call sends one datagram and returns once the kernel queued it;
// the manager processes it asynchronously and sends no reply. Without
// $NOTIFY_SOCKET (not started by systemd, or a unit without Type=notify)
// Notify, Store and Remove do nothing and return nil.
package sdnotify

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrStoreDisabled is returned by Store when the unit has no file
// descriptor store ($FDSTORE is "0"): systemd would close every file sent.
// systemd.exec(5) documents $FDSTORE as the unit's FileDescriptorStoreMax=;
// systemd before 254 does not set it, so its absence proves nothing.
var ErrStoreDisabled = errors.New("the unit's file descriptor store is disabled (FileDescriptorStoreMax=0); set FileDescriptorStoreMax= in the unit")

// maxFiles is the kernel's limit of descriptors in one SCM_RIGHTS message
// (SCM_MAX_FD); sendmsg fails with EINVAL beyond it.
const maxFiles = 253

// sendTimeout bounds one sendmsg: a datagram socket blocks when the
// manager's receive queue is full, and a daemon must not hang forever on a
// stuck manager (sd_notify(3) has no timeout; we prefer an error).
var sendTimeout = 5 * time.Second

// Enabled reports whether $NOTIFY_SOCKET is set, that is whether a service
// manager listens for notifications.
func Enabled() bool {
	return os.Getenv("NOTIFY_SOCKET") != ""
}

// maxMessage is the largest datagram systemd reads (NOTIFY_BUFFER_MAX,
// PIPE_BUF); it ignores a longer one as truncated.
const maxMessage = 4096

// Notify sends state (for example "READY=1" or "STOPPING=1", see
// sd_notify(3); several newline-separated assignments may share one
// message) to the service manager. It does nothing without
// $NOTIFY_SOCKET.
func Notify(state string) error {
	switch {
	case state == "":
		return errors.New("sdnotify: empty notification")
	case strings.IndexByte(state, 0) >= 0:
		return errors.New("sdnotify: notification contains a NUL byte, which systemd rejects")
	case len(state) > maxMessage:
		return fmt.Errorf("sdnotify: notification of %d bytes; systemd reads at most %d", len(state), maxMessage)
	}
	return send(state, nil)
}

// Store hands files to the service manager's file descriptor store under
// name (FDSTORE=1 with FDNAME=name, sd_notify(3)): systemd keeps its own
// duplicates and passes them back at the next start of the service, where
// Listen returns them under the same name. All files of one call share the
// name; the caller keeps (and still closes) its files. The files' flags
// are not changed (no file is switched to blocking mode).
//
// systemd keeps a stored descriptor until FDSTOREREMOVE=1 (Remove), until
// it polls POLLHUP or POLLERR on it (a pipe whose writers are all gone),
// or until the unit stops; a file that is already stored (the same open
// file) is not stored twice, and files beyond FileDescriptorStoreMax= are
// closed (systemd.service(5)). Storing another file under a name that is
// already stored adds it; Remove the old one first to replace it.
//
// A bad name or file list is an error whether or not a manager listens.
// Without $NOTIFY_SOCKET, Store does nothing; with $FDSTORE "0" it returns
// ErrStoreDisabled.
func Store(name string, files ...*os.File) error {
	if !ValidName(name) {
		return fmt.Errorf("sdnotify: store %q: %w", name, errInvalidName)
	}
	if len(files) == 0 {
		return fmt.Errorf("sdnotify: store %q: no file to store", name)
	}
	if len(files) > maxFiles {
		return fmt.Errorf("sdnotify: store %q: %d files in one message, the kernel passes at most %d; store them in several calls", name, len(files), maxFiles)
	}
	for i, f := range files {
		if f == nil {
			return fmt.Errorf("sdnotify: store %q: file %d is nil", name, i)
		}
	}
	if !Enabled() {
		return nil
	}
	if os.Getenv("FDSTORE") == "0" {
		return fmt.Errorf("sdnotify: store %q: %w", name, ErrStoreDisabled)
	}
	fds, err := dupAll(files)
	if err != nil {
		return fmt.Errorf("sdnotify: store %q: %w", name, err)
	}
	defer closeAll(fds)
	return send("FDSTORE=1\nFDNAME="+name, fds)
}

// Remove asks the service manager to close and forget every descriptor
// stored under name (FDSTOREREMOVE=1, sd_notify(3)). The manager ignores
// an unknown name. It does nothing without $NOTIFY_SOCKET or when the
// store is disabled ($FDSTORE "0"), as nothing can be stored then.
func Remove(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("sdnotify: remove %q: %w", name, errInvalidName)
	}
	if os.Getenv("FDSTORE") == "0" {
		return nil
	}
	return send("FDSTOREREMOVE=1\nFDNAME="+name, nil)
}

// dupAll duplicates the files' descriptors (close-on-exec) through
// SyscallConn, because (*os.File).Fd would switch a socket obtained from
// net.(*TCPListener).File to blocking mode, and with it the live listener
// that shares its open file description.
func dupAll(files []*os.File) ([]int, error) {
	fds := make([]int, 0, len(files))
	for i, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			closeAll(fds)
			return nil, fmt.Errorf("file %d (%s): %w", i, f.Name(), err)
		}
		var dupErr error
		ctlErr := rc.Control(func(fd uintptr) {
			var nfd int
			nfd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
			if dupErr == nil {
				fds = append(fds, nfd)
			}
		})
		if ctlErr == nil {
			ctlErr = dupErr
		}
		if ctlErr != nil {
			closeAll(fds)
			return nil, fmt.Errorf("duplicate file %d (%s): %w", i, f.Name(), ctlErr)
		}
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// send writes state (and fds as SCM_RIGHTS) as one datagram to
// $NOTIFY_SOCKET, which is an absolute path or, with a leading "@", a name
// in the abstract namespace (sd_notify(3)).
func send(state string, fds []int) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	what := strings.ReplaceAll(state, "\n", " ")
	if len(addr) < 2 || (addr[0] != '/' && addr[0] != '@') {
		return fmt.Errorf("sdnotify: send %q: NOTIFY_SOCKET %q is neither an absolute path nor an abstract @name", what, addr)
	}
	// unix.SockaddrUnix maps a leading "@" to the abstract namespace.
	sa := &unix.SockaddrUnix{Name: addr}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sdnotify: send %q: open a socket: %w", what, err)
	}
	defer unix.Close(s)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	var n int
	deadline := time.Now().Add(sendTimeout)
	for {
		// A signal handled by this thread ends a send that has a timeout
		// with EINTR (signal(7)); the retry waits only for what is left,
		// or signals arriving more often than sendTimeout would keep the
		// send blocked for ever.
		left := time.Until(deadline)
		if left <= 0 {
			err = unix.EAGAIN
			break
		}
		tv := unix.NsecToTimeval(max(left, time.Microsecond).Nanoseconds()) // a zero timeval is no timeout
		if err := unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			return fmt.Errorf("sdnotify: send %q: set the send timeout: %w", what, err)
		}
		n, err = unix.SendmsgN(s, []byte(state), oob, sa, unix.MSG_NOSIGNAL)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.EAGAIN {
		return fmt.Errorf("sdnotify: send %q to %s: the service manager did not take the message within %v", what, addr, sendTimeout)
	}
	if err != nil {
		return fmt.Errorf("sdnotify: send %q to %s: %w", what, addr, err)
	}
	if n != len(state) {
		return fmt.Errorf("sdnotify: send %q to %s: short write (%d of %d bytes)", what, addr, n, len(state))
	}
	return nil
}
