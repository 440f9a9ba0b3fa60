package engine

import (
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
	"github.com/rollbridge/rollbridge/sdnotify"
	"golang.org/x/sys/unix"
)

// The names of the daemon's entries in systemd's file descriptor store
// (docs/troubleshooting.md#when-the-daemon-crashes): its three listeners,
// and the read ends of each process's output pipes.
const (
	fdProxy   = "proxy"
	fdControl = "control"
	fdMetrics = "metrics"
)

// outputFDNames names the stored output pipes of the process with this
// pid and /proc start time: "out-<pid>-<start>" (stdout) and
// "err-<pid>-<start>" (stderr). The start time keeps a recycled pid from
// meeting another process's pipes.
func outputFDNames(pid int, start uint64) (stdout, stderr string) {
	suffix := strconv.Itoa(pid) + "-" + strconv.FormatUint(start, 10)
	return "out-" + suffix, "err-" + suffix
}

// fdStore is the daemon's side of systemd's file descriptor store: what
// systemd passed back at start (taken out by name as it is used), and
// the hand-over of new entries. Without $NOTIFY_SOCKET it holds nothing
// and stores nothing.
type fdStore struct {
	e       *Engine
	enabled bool

	mu     sync.Mutex
	passed map[string][]*os.File // passed back at start, not used yet
	// reused are the listeners used as systemd passed them back: still
	// in its store, so not stored again (a remove and a store in a row
	// would leave a moment with nothing stored).
	reused  map[string]net.Listener
	names   []string // every name passed back, for the event
	refused bool     // a store was refused: logged once
}

// openFDStore takes the descriptors systemd passed to this start
// (LISTEN_FDS, checked against LISTEN_PID) and clears their variables,
// so no managed process inherits them.
func openFDStore(e *Engine) *fdStore {
	s := &fdStore{e: e, enabled: sdnotify.Enabled()}
	passed, err := sdnotify.Listen()
	if err != nil {
		e.events.log("fd store unusable", jsconfig.Field{Key: "error", Value: err.Error()}, jsconfig.Field{Key: "name", Value: nil})
	}
	s.passed = passed
	for name := range passed {
		s.names = append(s.names, name)
	}
	if len(s.names) > 0 {
		sort.Strings(s.names)
		e.events.log("fd store restored", jsconfig.Field{Key: "names", Value: s.names})
	}
	return s
}

// passedAny reports whether systemd passed anything back at start.
func (s *fdStore) passedAny() bool { return len(s.names) > 0 }

// take removes the descriptors passed back under name and returns them.
func (s *fdStore) take(name string) []*os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	files := s.passed[name]
	delete(s.passed, name)
	return files
}

// takeOne is take for a name that holds one descriptor; extra ones are
// closed.
func (s *fdStore) takeOne(name string) *os.File {
	files := s.take(name)
	if len(files) == 0 {
		return nil
	}
	for _, f := range files[1:] {
		f.Close()
	}
	return files[0]
}

// store hands files to systemd under name. Nothing is kept here: the
// kernel copies the descriptors into systemd.
func (s *fdStore) store(name string, files ...*os.File) {
	if !s.enabled || len(files) == 0 {
		return
	}
	if err := sdnotify.Store(name, files...); err != nil {
		s.mu.Lock()
		first := !s.refused
		s.refused = true
		s.mu.Unlock()
		if first {
			s.e.events.log("fd store refused", jsconfig.Field{Key: "error", Value: err.Error()}, jsconfig.Field{Key: "name", Value: name})
		}
	}
}

// remove drops name from systemd's store.
func (s *fdStore) remove(names ...string) {
	if !s.enabled {
		return
	}
	for _, name := range names {
		_ = sdnotify.Remove(name)
	}
}

// storeListener hands a listener to systemd under name, replacing what
// the name held (a listener passed back but not used: the config moved
// it).
func (s *fdStore) storeListener(name string, ln net.Listener) {
	if !s.enabled {
		return
	}
	s.mu.Lock()
	reused := s.reused[name] == ln
	s.mu.Unlock()
	if reused {
		return
	}
	f, err := listenerFile(ln)
	if err != nil {
		return
	}
	defer f.Close()
	s.remove(name)
	s.store(name, f)
}

// reuse records that ln, passed back under name, is in use.
func (s *fdStore) reuse(name string, ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reused == nil {
		s.reused = map[string]net.Listener{}
	}
	s.reused[name] = ln
}

// listenerFile duplicates a listener's descriptor.
func listenerFile(ln net.Listener) (*os.File, error) {
	type filer interface{ File() (*os.File, error) }
	if l, ok := ln.(filer); ok {
		return l.File()
	}
	return nil, os.ErrInvalid
}

// pipes is runtime.Options.OnPipes: a spawned process's output pipes go
// into the store, and leave it once their capture ended.
func (s *fdStore) pipes(p runtime.OutputPipes) {
	out, errName := outputFDNames(p.PID, p.StartTime)
	if p.Closed {
		s.remove(out, errName)
		return
	}
	if p.Stdout != nil {
		s.store(out, p.Stdout)
		p.Stdout.Close()
	}
	if p.Stderr != nil {
		s.store(errName, p.Stderr)
		p.Stderr.Close()
	}
}

// outputPipes takes the stored pipes of a re-adopted process; either may
// be nil (not stored, or no store).
func (s *fdStore) outputPipes(pid int, start uint64) (stdout, stderr *os.File) {
	out, errName := outputFDNames(pid, start)
	return s.takeOne(out), s.takeOne(errName)
}

// closeUnused closes what systemd passed back and nothing used (the
// pipes of processes that were not re-adopted, listeners of a moved
// address) and drops it from the store.
func (s *fdStore) closeUnused() {
	s.mu.Lock()
	left := s.passed
	s.passed = nil
	s.mu.Unlock()
	for name, files := range left {
		for _, f := range files {
			f.Close()
		}
		s.remove(name)
	}
}

// storedProxy returns the proxy listener systemd passed back when it
// still listens where the config says, else nil (the passed one is
// closed: the config moved the proxy).
func (s *fdStore) storedProxy(px jsconfig.Proxy) net.Listener {
	ln := s.storedListener(fdProxy)
	if ln == nil {
		return nil
	}
	if !listensAt(ln, px) {
		ln.Close()
		return nil
	}
	s.reuse(fdProxy, ln)
	return ln
}

// storedMetrics is storedProxy for the metrics listener at addr.
func (s *fdStore) storedMetrics(addr string) net.Listener {
	ln := s.storedListener(fdMetrics)
	if ln == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || !listensAt(ln, jsconfig.Proxy{Host: host, Port: n}) {
		ln.Close()
		return nil
	}
	s.reuse(fdMetrics, ln)
	return ln
}

// storedControl returns the control listener systemd passed back when
// the socket file at path is still bound to it, else nil. The daemon
// binds its socket under a unique private name and renames it into place
// (listenControl), so the socket file at path is this listener's exactly
// when a connection to path reaches a socket bound under that same
// unique name. The test connection waits in the backlog like any client
// and is closed unread.
func (s *fdStore) storedControl(path string) *controlSocket {
	ln := s.storedListener(fdControl)
	if ln == nil {
		return nil
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil
	}
	ul.SetUnlinkOnClose(false)
	fi, err := os.Lstat(path)
	if err == nil {
		var conn net.Conn
		conn, err = net.DialTimeout("unix", path, time.Second)
		if err == nil {
			peer := peerName(conn)
			conn.Close()
			if peer == "" || peer != ul.Addr().String() {
				err = os.ErrInvalid
			}
		}
	}
	if err != nil {
		ul.Close()
		return nil
	}
	s.reuse(fdControl, ul)
	return &controlSocket{path: path, listener: ul, inode: fi}
}

// storedListener turns the descriptor passed back under name into a
// listener, or nil.
func (s *fdStore) storedListener(name string) net.Listener {
	f := s.takeOne(name)
	if f == nil {
		return nil
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		s.e.events.log("fd store unusable", jsconfig.Field{Key: "error", Value: err.Error()}, jsconfig.Field{Key: "name", Value: name})
		return nil
	}
	return ln
}

// peerName is the name the peer of a Unix connection was bound under, as
// getpeername(2) reports it, or "".
func peerName(conn net.Conn) string {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return ""
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return ""
	}
	name := ""
	_ = raw.Control(func(fd uintptr) {
		if sa, err := unix.Getpeername(int(fd)); err == nil {
			if u, ok := sa.(*unix.SockaddrUnix); ok {
				name = u.Name
			}
		}
	})
	return name
}

// daemonOnlyEnv are the variables through which systemd talks to the
// daemon itself: a managed process that inherited them could send
// notifications (READY=1, FDSTORE=1) in the daemon's name.
var daemonOnlyEnv = []string{"NOTIFY_SOCKET", "FDSTORE", "WATCHDOG_PID", "WATCHDOG_USEC"}

// processEnviron is the daemon's environment as managed processes
// inherit it: without daemonOnlyEnv.
func processEnviron() []string {
	env := os.Environ()
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(daemonOnlyEnv, name) {
			out = append(out, kv)
		}
	}
	return out
}
