package sdnotify_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/sdnotify"
	"github.com/rollbridge/rollbridge/sdnotify/sdtest"
	"golang.org/x/sys/unix"
)

// newManager starts a harness and points this process's $NOTIFY_SOCKET
// and $FDSTORE at it.
func newManager(t *testing.T, max int) *sdtest.Manager {
	t.Helper()
	m, err := sdtest.NewManager(t.TempDir(), max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	t.Setenv("FDSTORE", "") // restored after the test
	os.Unsetenv("FDSTORE")  // Env sets it only for an enabled store
	for _, kv := range m.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return m
}

func syncManager(t *testing.T, m *sdtest.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"proxy", true},
		{"out-1234-98765", true},
		{"with space ~!", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false},
		{"", false},
		{"a:b", false},
		{"line\nbreak", false},
		{"tab\t", false},
		{"del\x7f", false},
		{"naïve", false},
	} {
		if got := sdnotify.ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// Bad arguments are errors also without a service manager, so a caller's
// mistake shows up in every test run, not only under systemd.
func TestStoreRefusesBadArgumentsWithoutManager(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	r, _ := pipe(t)
	many := make([]*os.File, 254)
	for i := range many {
		many[i] = r
	}
	for _, tc := range []struct {
		name  string
		files []*os.File
		want  string
	}{
		{"a:b", []*os.File{r}, "invalid descriptor name"},
		{"", []*os.File{r}, "invalid descriptor name"},
		{"ok", nil, "no file to store"},
		{"ok", []*os.File{nil}, "file 0 is nil"},
		{"ok", many, "at most 253"},
	} {
		err := sdnotify.Store(tc.name, tc.files...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Store(%q, %d files) = %v, want an error containing %q", tc.name, len(tc.files), err, tc.want)
		}
	}
	if err := sdnotify.Remove("a:b"); err == nil {
		t.Error("Remove of an invalid name succeeded")
	}
}

func TestWithoutNotifySocketNothingIsSent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	r, _ := pipe(t)
	if sdnotify.Enabled() {
		t.Fatal("Enabled without NOTIFY_SOCKET")
	}
	for _, err := range []error{sdnotify.Notify("READY=1"), sdnotify.Store("x", r), sdnotify.Remove("x")} {
		if err != nil {
			t.Errorf("got %v, want nil without NOTIFY_SOCKET", err)
		}
	}
}

func TestNotifyReachesManager(t *testing.T) {
	m := newManager(t, 4)
	if !sdnotify.Enabled() {
		t.Fatal("not Enabled with NOTIFY_SOCKET set")
	}
	if err := sdnotify.Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	if err := sdnotify.Notify("STOPPING=1"); err != nil {
		t.Fatal(err)
	}
	syncManager(t, m)
	if got := strings.Join(m.Notifications(), ","); got != "READY=1,STOPPING=1" {
		t.Fatalf("manager saw %q", got)
	}
	for _, bad := range []string{"", "READY=1\x00", "STATUS=" + strings.Repeat("x", 4090)} {
		if err := sdnotify.Notify(bad); err == nil {
			t.Errorf("notification %.20q... accepted", bad)
		}
	}
	syncManager(t, m)
	if st := m.Stats(); st.Messages != 4 || st.Malformed != 0 { // 2 notifications, 2 barriers
		t.Fatalf("manager stats %+v; the refused notifications must not be sent", st)
	}
}

// An abstract socket address ("@name") is how systemd's user managers and
// containers often pass $NOTIFY_SOCKET.
func TestNotifyAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@rollbridge-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	r, _ := pipe(t)
	if err := sdnotify.Store("out-1-2", r); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf, oob := make([]byte, 512), make([]byte, 512)
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "FDSTORE=1\nFDNAME=out-1-2" {
		t.Fatalf("datagram %q", got)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v, %v", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights %v, %v", fds, err)
	}
	defer unix.Close(fds[0])
	var a, b unix.Stat_t
	unix.Fstat(fds[0], &a)
	unix.Fstat(int(r.Fd()), &b)
	if a.Ino != b.Ino {
		t.Fatal("the descriptor received is not the pipe stored")
	}
}

func TestNotifySocketErrorsNameTheSocket(t *testing.T) {
	for _, addr := range []string{"relative/path", "@", "vsock:2:1234"} {
		t.Setenv("NOTIFY_SOCKET", addr)
		if err := sdnotify.Notify("READY=1"); err == nil || !strings.Contains(err.Error(), "neither an absolute path") {
			t.Errorf("NOTIFY_SOCKET=%q: got %v", addr, err)
		}
	}
	missing := t.TempDir() + "/gone.sock"
	t.Setenv("NOTIFY_SOCKET", missing)
	err := sdnotify.Notify("READY=1")
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("dead socket: got %v, want ENOENT naming %s", err, missing)
	}
}

// A store disabled by the unit (FileDescriptorStoreMax=0, $FDSTORE=0) is an
// error for Store, and nothing is sent; Remove has nothing to remove.
func TestStoreDisabled(t *testing.T) {
	m := newManager(t, 4)
	t.Setenv("FDSTORE", "0")
	r, _ := pipe(t)
	if err := sdnotify.Store("x", r); !errors.Is(err, sdnotify.ErrStoreDisabled) {
		t.Fatalf("Store with FDSTORE=0: %v, want ErrStoreDisabled", err)
	}
	if err := sdnotify.Remove("x"); err != nil {
		t.Fatalf("Remove with FDSTORE=0: %v", err)
	}
	syncManager(t, m)
	if st := m.Stats(); st.Messages != 1 { // the barrier of syncManager
		t.Fatalf("manager received %d messages, want only the barrier", st.Messages)
	}
}

func TestStoreAndRemove(t *testing.T) {
	m := newManager(t, 8)
	r1, _ := pipe(t)
	r2, w2 := pipe(t)
	r3, _ := pipe(t)
	if err := sdnotify.Store("out-1-1", r1); err != nil {
		t.Fatal(err)
	}
	if err := sdnotify.Store("err-1-1", r2, r3); err != nil {
		t.Fatal(err)
	}
	syncManager(t, m)
	if got := strings.Join(m.Names(), ","); got != "out-1-1,err-1-1,err-1-1" {
		t.Fatalf("store %s", got)
	}
	closed, _ := pipe(t)
	closed.Close()
	if err := sdnotify.Store("closed", closed); err == nil || !strings.Contains(err.Error(), "closed file") {
		t.Fatalf("Store of a closed file: %v", err)
	}
	if err := sdnotify.Remove("err-1-1"); err != nil {
		t.Fatal(err)
	}
	if err := sdnotify.Remove("never-stored"); err != nil {
		t.Fatal(err)
	}
	syncManager(t, m)
	if got := strings.Join(m.Names(), ","); got != "out-1-1" {
		t.Fatalf("after removing err-1-1 the store holds %s", got)
	}
	st := m.Stats()
	if st.Removed != 2 || st.UnknownRemoves != 1 {
		t.Fatalf("removed %d, unknown removes %d; want 2 and 1", st.Removed, st.UnknownRemoves)
	}
	// The manager closed its copy of the read end: with ours closed too, a
	// write finds no reader.
	r2.Close()
	if _, err := w2.Write([]byte("x")); !errors.Is(err, unix.EPIPE) {
		t.Fatalf("write to a pipe whose stored read end was removed: %v, want EPIPE", err)
	}
}

// Store must not switch a live listener to blocking mode: a listener's file
// shares its open file description (and O_NONBLOCK) with the listener the
// proxy accepts on, and (*os.File).Fd would clear the flag.
func TestStoreKeepsListenerNonblocking(t *testing.T) {
	m := newManager(t, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := sdnotify.Store("proxy", f); err != nil {
		t.Fatal(err)
	}
	syncManager(t, m)
	if got := strings.Join(m.Names(), ","); got != "proxy" {
		t.Fatalf("store %s", got)
	}
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags int
	rc.Control(func(fd uintptr) { flags, _ = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if flags&unix.O_NONBLOCK == 0 {
		t.Fatal("the listener was switched to blocking mode by Store")
	}
}
