// Package sdtest plays systemd's part of the notify and file descriptor
// store protocol for tests and benchmarks: a Manager listens on a notify
// socket, keeps the descriptors a service stores (FDSTORE=1 with
// SCM_RIGHTS, FDSTOREREMOVE=1), and starts the service again with them as
// $LISTEN_FDS / $LISTEN_FDNAMES / $LISTEN_PID, as systemd does after a
// crash with Restart=on-failure.
//
// It follows systemd's rules (sd_notify(3), sd_listen_fds(3),
// systemd.service(5) FileDescriptorStoreMax=): descriptors beyond the
// store's maximum are closed, an open file already stored is not stored
// twice, an invalid FDNAME= is ignored (the files are stored as "stored"),
// files sent without FDSTORE=1 are closed, and before each start entries
// that poll POLLHUP or POLLERR are dropped (systemd drops them as soon as it
// sees the event; the harness looks before a start, which is when it
// matters). Unlike systemd it accepts messages from any sender
// (NotifyAccess=all) and keeps the store until Reset or Close.
package sdtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// bufferSize is the largest datagram systemd reads (NOTIFY_BUFFER_MAX,
// PIPE_BUF); longer ones arrive truncated and are ignored.
const bufferSize = 4096

// maxNotifications bounds the recorded state lines so a chatty or hostile
// sender cannot grow the harness without limit.
const maxNotifications = 1000

// scmMaxFD is the kernel's limit of descriptors in one message.
const scmMaxFD = 253

// Entry is one stored descriptor. The File belongs to the Manager: inspect
// it (Stat, SyscallConn), do not close it; what a test reads from a stored
// pipe, the next start no longer gets.
type Entry struct {
	Name string
	File *os.File
}

// Stats counts what the Manager did with the messages it received.
type Stats struct {
	Messages       int // datagrams received, Sync's barriers included
	Malformed      int // ignored whole: truncated, embedded NUL, or no KEY=VALUE line
	Stored         int // descriptors added to the store
	Refused        int // descriptors closed because the store was full
	Duplicates     int // descriptors closed because the same open file was stored already
	InvalidNames   int // FDNAME= values ignored as invalid (or missing on FDSTOREREMOVE=1)
	Stray          int // descriptors closed because their message had no FDSTORE=1
	Removed        int // descriptors closed by FDSTOREREMOVE=1
	UnknownRemoves int // FDSTOREREMOVE=1 for a name not in the store
	Dropped        int // entries dropped before a start because they polled POLLHUP/POLLERR
	Ready          int // READY=1 messages
	Stopping       int // STOPPING=1 messages
}

type entry struct {
	name string
	file *os.File
	fd   int
	poll bool // FDPOLL=0 turns polling off for the files of that message
}

// Manager is the fake service manager. Its methods are safe for
// concurrent use.
type Manager struct {
	dir  string
	path string
	max  int
	conn *net.UnixConn
	done chan struct{} // closed when the reader goroutine ends

	mu            sync.Mutex
	store         []entry
	stats         Stats
	notifications []string
	readyMark     int           // stats.Ready when the last start was built
	changed       chan struct{} // closed and replaced after every message
	closed        bool
}

// NewManager listens on a notify socket in dir (which must exist and stay
// until Close) for a store of at most max descriptors; max 0 disables the
// store like FileDescriptorStoreMax=0 (every descriptor is refused).
func NewManager(dir string, max int) (*Manager, error) {
	if max < 0 {
		return nil, fmt.Errorf("sdtest: store maximum %d is negative", max)
	}
	path := filepath.Join(dir, "notify.sock")
	if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
		return nil, fmt.Errorf("sdtest: notify socket path %s is too long for a unix socket; use a shorter directory", path)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("sdtest: listen on %s: %w", path, err)
	}
	m := &Manager{dir: dir, path: path, max: max, conn: conn, done: make(chan struct{}), changed: make(chan struct{})}
	go m.read()
	return m, nil
}

// Socket is the notify socket's path.
func (m *Manager) Socket() string { return m.path }

// Env is what systemd sets for the service: $NOTIFY_SOCKET and, when the
// store is enabled, $FDSTORE (its maximum, as systemd 254 and later do).
func (m *Manager) Env() []string {
	env := []string{"NOTIFY_SOCKET=" + m.path}
	if m.max > 0 {
		env = append(env, "FDSTORE="+strconv.Itoa(m.max))
	}
	return env
}

// Store returns the stored entries in insertion order, the order in which
// a start passes them.
func (m *Manager) Store() []Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Entry, len(m.store))
	for i, e := range m.store {
		out[i] = Entry{Name: e.name, File: e.file}
	}
	return out
}

// Names returns the stored entries' names in insertion order.
func (m *Manager) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, len(m.store))
	for i, e := range m.store {
		out[i] = e.name
	}
	return out
}

// Stats returns the counters so far.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Notifications returns the state lines received other than the store's
// own (FDSTORE, FDSTOREREMOVE, FDNAME, FDPOLL, BARRIER), in order, for
// example "READY=1" and "STOPPING=1"; at most the last 1000.
func (m *Manager) Notifications() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.notifications...)
}

// WaitReady waits for READY=1 sent after the last Command or Start.
func (m *Manager) WaitReady(ctx context.Context) error {
	return m.wait(ctx, "READY=1", func() bool { return m.stats.Ready > m.readyMark })
}

func (m *Manager) wait(ctx context.Context, what string, cond func() bool) error {
	for {
		m.mu.Lock()
		ok, changed, closed := cond(), m.changed, m.closed
		m.mu.Unlock()
		if ok {
			return nil
		}
		if closed {
			return fmt.Errorf("sdtest: waiting for %s: the manager is closed", what)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("sdtest: waiting for %s: %w", what, ctx.Err())
		}
	}
}

// Sync returns once every message sent to the socket before the call has
// been processed, with systemd's BARRIER=1: a pipe's write end travels
// through the queue and is closed when its message is handled.
func (m *Manager) Sync(ctx context.Context) error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sdtest: sync: %w", err)
	}
	defer r.Close()
	err = sendRaw(m.path, []byte("BARRIER=1"), []*os.File{w})
	w.Close()
	if err != nil {
		return fmt.Errorf("sdtest: sync: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		r.SetReadDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { r.Close() })
	defer stop()
	if _, err := r.Read(make([]byte, 1)); err != io.EOF {
		return fmt.Errorf("sdtest: sync: the barrier was not processed: %v", err)
	}
	return nil
}

// Reset closes and forgets every stored descriptor, as systemd does when
// the unit stops instead of restarting (systemctl stop, or a clean exit
// under Restart=on-failure) unless FileDescriptorStorePreserve= is set.
func (m *Manager) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.store {
		e.file.Close()
	}
	m.store = nil
}

// Close stops listening, closes every stored descriptor and removes the
// socket file.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	err := m.conn.Close()
	<-m.done
	m.mu.Lock()
	for _, e := range m.store {
		e.file.Close()
	}
	m.store = nil
	m.broadcast()
	m.mu.Unlock()
	os.Remove(m.path)
	return err
}

// read handles datagrams one at a time, in arrival order, like systemd's
// notify socket handler.
func (m *Manager) read() {
	defer close(m.done)
	buf := make([]byte, bufferSize)
	oob := make([]byte, unix.CmsgSpace(scmMaxFD*4)+unix.CmsgSpace(64))
	for {
		n, oobn, flags, _, err := m.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return // closed by Close; net retries EINTR and EAGAIN itself
		}
		fds := rights(oob[:oobn])
		m.handle(buf[:n], fds, flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0)
	}
}

// rights returns the descriptors of every SCM_RIGHTS message in oob.
func rights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func (m *Manager) handle(msg []byte, fds []int, truncated bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.broadcast()
	m.stats.Messages++
	tags, ok := parse(msg)
	if truncated || !ok {
		m.stats.Malformed++
		closeFDs(fds)
		return
	}
	for _, line := range tags.lines {
		key, _, _ := strings.Cut(line, "=")
		switch key {
		case "FDSTORE", "FDSTOREREMOVE", "FDNAME", "FDPOLL", "BARRIER":
			continue
		}
		if len(m.notifications) == maxNotifications {
			m.notifications = m.notifications[1:]
		}
		m.notifications = append(m.notifications, line)
	}
	if tags.has("READY=1") {
		m.stats.Ready++
	}
	if tags.has("STOPPING=1") {
		m.stats.Stopping++
	}
	name, hasName := tags.value("FDNAME")
	validName := hasName && validName(name)
	if tags.has("FDSTORE=1") {
		if !validName {
			if hasName {
				m.stats.InvalidNames++
			}
			name = "stored"
		}
		m.add(fds, name, !tags.has("FDPOLL=0"))
		fds = nil
	}
	if tags.has("FDSTOREREMOVE=1") {
		if validName {
			m.remove(name)
		} else {
			m.stats.InvalidNames++
		}
	}
	if len(fds) > 0 {
		if !tags.has("BARRIER=1") {
			m.stats.Stray += len(fds)
		}
		closeFDs(fds)
	}
}

// add stores fds under name, closing those beyond the maximum and those
// whose open file is stored already (systemd's service_add_fd_store).
func (m *Manager) add(fds []int, name string, poll bool) {
	for _, fd := range fds {
		if len(m.store) >= m.max {
			m.stats.Refused++
			unix.Close(fd)
			continue
		}
		if m.stored(fd) {
			m.stats.Duplicates++
			unix.Close(fd)
			continue
		}
		m.store = append(m.store, entry{name: name, file: os.NewFile(uintptr(fd), name), fd: fd, poll: poll})
		m.stats.Stored++
	}
}

// stored reports whether fd's open file is in the store: same inode and
// the same status flags (which tells a pipe's read end from its write
// end); device nodes never count as the same (systemd's same_fd).
func (m *Manager) stored(fd int) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFCHR || t == unix.S_IFBLK {
		return false
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return false
	}
	for _, e := range m.store {
		var other unix.Stat_t
		if unix.Fstat(e.fd, &other) != nil || other.Dev != st.Dev || other.Ino != st.Ino {
			continue
		}
		if ofl, err := unix.FcntlInt(uintptr(e.fd), unix.F_GETFL, 0); err == nil && ofl == fl {
			return true
		}
	}
	return false
}

func (m *Manager) remove(name string) {
	kept := m.store[:0]
	removed := 0
	for _, e := range m.store {
		if e.name == name {
			e.file.Close()
			removed++
			continue
		}
		kept = append(kept, e)
	}
	clear(m.store[len(kept):])
	m.store = kept
	m.stats.Removed += removed
	if removed == 0 {
		m.stats.UnknownRemoves++
	}
}

// prune drops the entries that poll POLLHUP or POLLERR (a pipe whose
// writers all closed, a socket whose peer is gone), as systemd does unless
// the entry was stored with FDPOLL=0.
func (m *Manager) prune() {
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := m.store[:0]
	for _, e := range m.store {
		if e.poll && hungUp(e.fd) {
			e.file.Close()
			m.stats.Dropped++
			continue
		}
		kept = append(kept, e)
	}
	clear(m.store[len(kept):])
	m.store = kept
}

func hungUp(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd)}}
	for {
		n, err := unix.Poll(pfd, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	}
}

// broadcast wakes the waiters; the caller holds m.mu.
func (m *Manager) broadcast() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// tags is a parsed notify message: newline-separated KEY=VALUE lines.
type tags struct{ lines []string }

// parse splits msg into lines; a message with a NUL byte or without any
// KEY=VALUE line is malformed (systemd ignores it).
func parse(msg []byte) (tags, bool) {
	if len(msg) == 0 || bytes.IndexByte(msg, 0) >= 0 {
		return tags{}, false
	}
	var t tags
	for _, line := range strings.Split(string(msg), "\n") {
		if k, _, ok := strings.Cut(line, "="); ok && k != "" {
			t.lines = append(t.lines, line)
		}
	}
	return t, len(t.lines) > 0
}

func (t tags) has(line string) bool {
	for _, l := range t.lines {
		if l == line {
			return true
		}
	}
	return false
}

// value returns the first KEY= value, as systemd reads it.
func (t tags) value(key string) (string, bool) {
	for _, l := range t.lines {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// validName is systemd's fdname_is_valid: up to 255 ASCII characters,
// none a control character or ':' (the empty name included).
func validName(name string) bool {
	if len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// sendRaw sends one datagram with files to the socket at path.
func sendRaw(path string, msg []byte, files []*os.File) error {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(s, msg, oob, &unix.SockaddrUnix{Name: path}, unix.MSG_NOSIGNAL)
}

// Command builds (does not start) the service's next start the way systemd
// passes the store: the stored files as fds 3.. in store order
// (ExtraFiles, duplicates the caller closes after cmd.Start), $LISTEN_FDS
// and $LISTEN_FDNAMES, and $LISTEN_PID set by a shell to its own pid just
// before it execs bin, so the pid is the service's. Entries that poll
// POLLHUP/POLLERR are dropped first. The environment is the harness's
// minus any notify or LISTEN_ variables, plus Env(). A later READY=1 is
// what WaitReady waits for. If the stored files cannot be duplicated
// (out of descriptors), cmd.Err says so and cmd.Start returns it.
func (m *Manager) Command(bin string, args ...string) *exec.Cmd {
	cmd, err := m.command(bin, args, nil)
	if err != nil {
		cmd.Err = err
	}
	return cmd
}

func (m *Manager) command(bin string, args []string, base []string) (*exec.Cmd, error) {
	m.prune()
	m.mu.Lock()
	m.readyMark = m.stats.Ready
	var files []*os.File
	var names []string
	var dupErr error
	for _, e := range m.store {
		fd, err := unix.FcntlInt(uintptr(e.fd), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			dupErr = fmt.Errorf("sdtest: duplicate stored %q: %w", e.name, err)
			break
		}
		files = append(files, os.NewFile(uintptr(fd), e.name))
		names = append(names, e.name)
	}
	m.mu.Unlock()
	if dupErr != nil {
		for _, f := range files {
			f.Close()
		}
		files, names = nil, nil
	}
	script := `exec "$0" "$@"`
	if len(files) > 0 {
		script = `LISTEN_PID=$$ exec "$0" "$@"`
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, bin}, args...)...)
	if base == nil {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+4)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "FDSTORE", "LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, m.Env()...)
	if len(files) > 0 {
		env = append(env, "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	cmd.Env = env
	cmd.ExtraFiles = files
	return cmd, dupErr
}

// Start builds the start like Command, with env as the base environment
// (nil: the harness's) and the given output writers, and starts it. The
// process stays in the caller's process group, as systemd's main process
// stays in its unit's cgroup; the caller waits for it (cmd.Wait) and ends
// it by pid.
func (m *Manager) Start(bin string, args []string, env []string, stdout, stderr io.Writer) (*exec.Cmd, error) {
	cmd, err := m.command(bin, args, env)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Start()
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("sdtest: start %s: %w", bin, err)
	}
	return cmd, nil
}
