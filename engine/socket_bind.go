package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a Unix socket address holds
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// bindName is the socket's name inside the private directory.
const bindName = "sock"

// privateDirPattern names the private directory (os.MkdirTemp replaces
// the * with up to 10 digits).
const privateDirPattern = ".rollbridge-*"

// maxBindDir is the longest directory of control.path whose private
// directory still fits in a socket address without /proc.
const maxBindDir = maxSocketPath - len("/.rollbridge-4294967295/"+bindName)

// privateBind binds a Unix socket that first exists in a fresh directory
// only this process can enter (mode 0700, created next to the final path),
// so that nobody can connect to it, or swap it for something else, before
// its mode and owner are set. Changing the umask around bind would do the
// same for the mode, but the umask is process-wide and the daemon has
// other goroutines (and spawns children) at that moment.
//
// Everything after the bind goes through a descriptor of the directory,
// never its path, so a directory renamed away under us cannot redirect a
// chmod, chown or rename to a file of someone else's choosing.
type privateBind struct {
	dir   string // the private directory, removed by close
	dirFD int    // an O_PATH descriptor of it
}

// newPrivateBind creates the private directory in parent.
func newPrivateBind(parent string) (*privateBind, error) {
	dir, err := os.MkdirTemp(parent, privateDirPattern)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return &privateBind{dir: dir, dirFD: fd}, nil
}

// listen binds the socket in the private directory: by its path when the
// directory of finalPath is at most maxBindDir long (so the private path
// surely fits in a socket address), otherwise through the directory's
// descriptor as /proc/self/fd/<fd>/sock (systemd reaches long socket paths
// the same way).
func (b *privateBind) listen(finalPath string) (*net.UnixListener, error) {
	name := filepath.Join(b.dir, bindName)
	if len(filepath.Dir(finalPath)) > maxBindDir || len(name) > maxSocketPath {
		fdDir := "/proc/self/fd/" + strconv.Itoa(b.dirFD)
		if _, err := os.Stat(fdDir); err != nil {
			return nil, fmt.Errorf("Cannot bind the control socket %s safely: its directory is %d bytes long, too long to bind in a private directory next to it (at most %d bytes), and /proc, which reaches longer ones, is not mounted. Choose a control.path in a shorter directory, or mount /proc.",
				finalPath, len(filepath.Dir(finalPath)), maxBindDir)
		}
		name = fdDir + "/" + bindName
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // it is renamed into place; the daemon removes it itself
	return ln, nil
}

// chmod applies mode to the bound socket, after checking that the entry
// is still the socket (fchmodat cannot refuse to follow a link, but only
// this process can write the directory).
func (b *privateBind) chmod(mode fs.FileMode) error {
	var st unix.Stat_t
	if err := unix.Fstatat(b.dirFD, bindName, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("%s is not the socket just bound: something else writes the private directory the daemon binds in; check who can write %s, then start the daemon again", filepath.Join(b.dir, bindName), filepath.Dir(b.dir))
	}
	return unix.Fchmodat(b.dirFD, bindName, uint32(mode.Perm()), 0)
}

// chown gives the bound socket to uid and gid (-1 keeps one), without
// following a link.
func (b *privateBind) chown(uid, gid int) error {
	return unix.Fchownat(b.dirFD, bindName, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

// publish moves the socket to path, which must not exist: an entry that
// appeared there since the start-up check (another daemon that won the
// race, a file planted meanwhile) is never replaced. It returns the
// socket file as it now is at path.
func (b *privateBind) publish(path string) (os.FileInfo, error) {
	var before unix.Stat_t
	if err := unix.Fstatat(b.dirFD, bindName, &before, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, err
	}
	err := unix.Renameat2(b.dirFD, bindName, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE: a hard link fails on an
		// existing name just the same.
		if err = unix.Linkat(b.dirFD, bindName, unix.AT_FDCWD, path, 0); err == nil {
			_ = unix.Unlinkat(b.dirFD, bindName, 0)
		}
	}
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Dev != before.Dev || st.Ino != before.Ino {
		return nil, fmt.Errorf("the control socket %s was replaced while the daemon was setting it up: another process writes its directory; find it (ls -l %s), make sure only the daemon's user can write there, and start the daemon again", path, filepath.Dir(path))
	}
	return fi, nil
}

// close removes the private directory (empty once the socket is
// published) and its descriptor.
func (b *privateBind) close() {
	_ = unix.Unlinkat(b.dirFD, bindName, 0) // only when publishing failed
	unix.Close(b.dirFD)
	os.Remove(b.dir)
}
