package engine

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"golang.org/x/sys/unix"
)

// ControlEndpoint is the one place a client's view of the control socket
// is derived from the plan: its path, and whom to trust there besides
// root and the caller (control.owner, resolved as the daemon resolves it
// when it chowns the socket; a name that does not resolve adds nobody).
func ControlEndpoint(c jsconfig.Control) control.Endpoint {
	ep := control.Endpoint{Path: c.Path}
	if c.Owner != nil {
		if uid, err := resolveID(*c.Owner, "/etc/passwd"); err == nil {
			ep.Owner = uid
		}
	}
	return ep
}

// CheckControlSocket is the start-up probe (run first thing after the
// config is loaded, and again at the bind): a live daemon or another
// listener on the socket path is a fatal error, and so is a socket that
// belongs to, or is served by, a user this daemon does not trust (an
// impostor must not make root's daemon believe one is running); nothing
// listening is fine.
func CheckControlSocket(c jsconfig.Control) error {
	path := c.Path
	if len(path) > maxSocketPath {
		return fmt.Errorf("control.path %s is %d bytes long; a Unix socket path can have at most %d. Choose a shorter control.path.", path, len(path), maxSocketPath)
	}
	res, err := control.Probe(ControlEndpoint(c))
	switch {
	case err != nil:
		return err
	case !res.Alive:
		return notASocket(path)
	case res.Rollbridge:
		active := "(no active release)"
		if res.ActiveReleaseID != nil {
			active = *res.ActiveReleaseID
		}
		return fmt.Errorf(`A Rollbridge daemon for application "%s" is already running on %s (active release: %s). Run "rollbridge status" to inspect it or "rollbridge shutdown" to stop it, or set a different control.path.`,
			res.Application, path, active)
	}
	return fmt.Errorf("The control socket %s is already in use by another process. Stop that process or set a different control.path.", path)
}

// notASocket refuses a control path taken by something other than a
// socket: the daemon never deletes a file it did not create.
func notASocket(path string) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("Refusing to start: %s exists and is not a socket; remove it or choose another control.path", path)
	}
	return nil
}

// controlSocket is the daemon's bound control socket.
type controlSocket struct {
	path     string
	listener *net.UnixListener
	inode    os.FileInfo // what this daemon created, to never remove another's
}

// defaultControlMode is the socket's mode when control.mode is unset: only
// the daemon's user may connect. (The Node.js rollbridge left it to the
// umask; under umask 000 any local user could then deploy as root.)
const defaultControlMode fs.FileMode = 0o600

// listenControl binds the control socket with its mode and owner already
// applied: it binds in a private directory next to the final path (see
// privateBind), chmods and chowns it there, then renames it into place
// without replacing anything, so the socket is never reachable with
// looser permissions than configured. A stale socket is replaced;
// anything that is not a socket is left alone and refused.
func listenControl(c jsconfig.Control) (*controlSocket, error) {
	path := c.Path
	if err := CheckControlSocket(c); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		// A stale socket of a trusted owner (CheckControlSocket refused
		// anything else).
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	uid, gid, err := resolveOwner(c)
	if err != nil {
		return nil, err
	}
	mode := defaultControlMode
	if c.Mode != nil {
		mode = fs.FileMode(*c.Mode)
	}
	bind, err := newPrivateBind(filepath.Dir(path))
	if err != nil {
		return nil, listenError(err, path)
	}
	defer bind.close()
	ln, err := bind.listen(path)
	if err != nil {
		return nil, listenError(err, path)
	}
	fail := func(err error) (*controlSocket, error) {
		ln.Close()
		return nil, err
	}
	if err := bind.chmod(mode); err != nil {
		return fail(fmt.Errorf("Could not set the mode of the control socket %s: %w", path, err))
	}
	if uid != -1 || gid != -1 {
		if err := bind.chown(uid, gid); err != nil {
			reason := jsconfig.NodeError(err, "chown", path).Error()
			return fail(fmt.Errorf("Could not set control socket owner/group on %s: %s. Run the daemon as a user allowed to chown it (for example root, or a member of the target group).", path, reason))
		}
	}
	fi, err := bind.publish(path)
	if errors.Is(err, fs.ErrExist) {
		// Something appeared at the path since the check: say what.
		if cerr := CheckControlSocket(c); cerr != nil {
			return fail(cerr)
		}
		return fail(listenError(syscall.EADDRINUSE, path))
	}
	if err != nil {
		return fail(err)
	}
	return &controlSocket{path: path, listener: ln, inode: fi}, nil
}

// remove deletes the socket file if it is still the one this daemon
// created (a replacement daemon may already own the path).
func (s *controlSocket) remove() error {
	fi, err := os.Lstat(s.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if !os.SameFile(fi, s.inode) {
		return nil
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// listenError formats a bind failure the way Node does:
// "listen EADDRINUSE: address already in use 127.0.0.1:8182".
func listenError(err error, addr string) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	desc := map[syscall.Errno]string{
		syscall.EADDRINUSE:    "address already in use",
		syscall.EACCES:        "permission denied",
		syscall.EADDRNOTAVAIL: "address not available",
	}[errno]
	if desc == "" {
		desc = errno.Error()
	}
	return fmt.Errorf("listen %s: %s %s", unix.ErrnoName(errno), desc, addr)
}

// resolveOwner turns control.owner and control.group into ids (-1 keeps
// the current one). Names are looked up in /etc/passwd and /etc/group.
func resolveOwner(c jsconfig.Control) (uid, gid int, err error) {
	uid, gid = -1, -1
	if c.Owner != nil {
		if uid, err = resolveID(*c.Owner, "/etc/passwd"); err != nil {
			return 0, 0, fmt.Errorf(`Unknown user "%s". Use a numeric id, or ensure the user exists in /etc/passwd (name resolution covers local users only).`, c.Owner.Name)
		}
	}
	if c.Group != nil {
		if gid, err = resolveID(*c.Group, "/etc/group"); err != nil {
			return 0, 0, fmt.Errorf(`Unknown group "%s". Use a numeric id, or ensure the group exists in /etc/group (name resolution covers local groups only).`, c.Group.Name)
		}
	}
	return uid, gid, nil
}

var errUnknownName = errors.New("unknown name")

func resolveID(v jsconfig.IDOrName, database string) (int, error) {
	if !v.IsName() {
		return int(v.ID), nil
	}
	if n, err := strconv.Atoi(v.Name); err == nil && allDigits(v.Name) {
		return n, nil
	}
	f, err := os.Open(database)
	if err != nil {
		return 0, errUnknownName // an unreadable database counts as "not found"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if fields[0] != v.Name {
			continue
		}
		if len(fields) < 3 {
			return 0, errUnknownName
		}
		id, err := strconv.Atoi(fields[2])
		if err != nil {
			return 0, errUnknownName
		}
		return id, nil
	}
	return 0, errUnknownName
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
