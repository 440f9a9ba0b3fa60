package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"golang.org/x/sys/unix"
)

// daemonFile is one of the files ensure-daemon writes (the started
// daemon's log, its pid file), opened for writing.
type daemonFile struct {
	*os.File
	created bool // this call created it, so a refusal later removes it again
}

// openDaemonFile opens path for writing the way a file in a directory
// other users can write (the defaults are in /tmp) must be opened: a
// symbolic link is not followed, a new file is created 0600, and an
// existing one is used only when it is a regular file with no other hard
// link, owned by the caller or root (checked on the open descriptor, so
// nothing can be swapped in between). what and flag name the file and its
// option in the messages. appendOnly opens it for appending (the log).
func openDaemonFile(path, what, flag string, appendOnly bool) (*daemonFile, error) {
	mode := unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if appendOnly {
		mode |= unix.O_APPEND
	}
	// O_NONBLOCK: a named pipe planted at the path fails (ENXIO) instead of
	// blocking until someone reads it; it is cleared again below.
	mode |= unix.O_NONBLOCK
	advice := fmt.Sprintf("Remove it, or pass %s with a path in a directory only you can write.", flag)
	var fd int
	var err error
	created := false
	for attempt := 0; attempt < 3; attempt++ {
		fd, err = unix.Open(path, mode|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err == nil {
			created = true
			break
		}
		if !errors.Is(err, unix.EEXIST) {
			break
		}
		fd, err = unix.Open(path, mode, 0)
		if !errors.Is(err, unix.ENOENT) { // removed in between: create it after all
			break
		}
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("Refusing to use %s as the %s: it is a symbolic link, and rollbridge does not follow links there. %s", path, what, advice)
	case errors.Is(err, unix.ENXIO):
		return nil, fmt.Errorf("Refusing to use %s as the %s: it is not a regular file. %s", path, what, advice)
	case err != nil:
		return nil, fmt.Errorf("Cannot open the %s: %s", what, jsconfig.NodeError(err, "open", path))
	}
	f := &daemonFile{File: os.NewFile(uintptr(fd), path), created: created}
	refuse := func(reason string) (*daemonFile, error) {
		f.discard()
		return nil, fmt.Errorf("Refusing to use %s as the %s: %s. %s", path, what, reason, advice)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.discard()
		return nil, err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return refuse("it is not a regular file")
	case st.Uid != 0 && int(st.Uid) != os.Geteuid():
		return refuse(fmt.Sprintf("it belongs to %s, not to %s, so that user could read or replace what is written there", control.DescribeUID(st.Uid), fileOwners()))
	case st.Nlink > 1:
		return refuse(fmt.Sprintf("it has %d hard links, so writing to it would change another file too", st.Nlink))
	}
	// A file left by an earlier version (created with the umask) gets the
	// mode a new one has: what the daemon logs is for its user only.
	if st.Mode&0o077 != 0 {
		if err := unix.Fchmod(fd, 0o600); err != nil {
			return refuse(fmt.Sprintf("its mode %04o lets other users read it, and it cannot be changed to 0600 (%v)", st.Mode&0o7777, err))
		}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		f.discard()
		return nil, err
	}
	return f, nil
}

// discard closes the file and removes it if this call created it.
func (f *daemonFile) discard() {
	f.Close()
	if f.created {
		os.Remove(f.Name())
	}
}

// fileOwners names whom a daemon file may belong to: root or the caller.
func fileOwners() string {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Sprintf("you (uid %d) or root", euid)
	}
	return "root"
}

// removeOwnPIDFile removes the pid file path when it still is this
// daemon's: a regular file (opened without following a link) with one
// link, owned by the daemon's user, holding pid. Anything else is left
// alone: someone replaced or rewrote it, so it is no longer ours. It
// reports whether the file was removed.
func removeOwnPIDFile(path string, pid int) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() || st.Nlink != 1 {
		return false
	}
	buf := make([]byte, 32)
	n, err := io.ReadFull(f, buf)
	if err != io.ErrUnexpectedEOF || strings.TrimSpace(string(buf[:n])) != strconv.Itoa(pid) {
		return false // too long to be a pid, unreadable, or another pid
	}
	// The path must still name the file just read.
	var now unix.Stat_t
	if unix.Lstat(path, &now) != nil || now.Dev != st.Dev || now.Ino != st.Ino {
		return false
	}
	return unix.Unlink(path) == nil
}
