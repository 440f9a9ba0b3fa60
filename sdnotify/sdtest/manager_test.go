package sdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/sdnotify"
	"golang.org/x/sys/unix"
)

func newTestManager(t *testing.T, max int) *Manager {
	t.Helper()
	m, err := NewManager(t.TempDir(), max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func syncManager(t *testing.T, m *Manager) {
	t.Helper()
	if err := m.Sync(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

func testPipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// send is a raw client: any message, any files, as a misbehaving service
// would send them.
func send(t *testing.T, m *Manager, msg string, files ...*os.File) {
	t.Helper()
	if err := sendRaw(m.path, []byte(msg), files); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
}

// readerGone reports whether nobody holds w's pipe's read end any more
// (after the caller closed its own): a write fails with EPIPE.
func readerGone(w *os.File) bool {
	_, err := w.Write([]byte("x"))
	return errors.Is(err, unix.EPIPE)
}

// startedEnv runs sh through Start and returns what it saw: its pid, the
// LISTEN_ variables and the descriptors 3.. open in it.
func startedEnv(t *testing.T, m *Manager) (pid int, listenPID, fds, names, fdstore string, open []string) {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd, err := m.Start("/bin/sh", []string{"-c", `echo "$$|${LISTEN_PID-}|${LISTEN_FDS-}|${LISTEN_FDNAMES-}|${FDSTORE-}|$NOTIFY_SOCKET"; ls /proc/$$/fd`}, nil, &out, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sh: %v (%s)", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	f := strings.Split(lines[0], "|")
	if len(f) != 6 || f[5] != m.Socket() {
		t.Fatalf("sh printed %q", out.String())
	}
	pid, _ = strconv.Atoi(f[0])
	for _, l := range lines[1:] {
		if n, err := strconv.Atoi(l); err == nil && n >= 3 {
			open = append(open, l)
		}
	}
	return pid, f[1], f[2], f[3], f[4], open
}

func TestStartPassesTheStoreAsListenFDs(t *testing.T) {
	m := newTestManager(t, 8)
	t.Setenv("NOTIFY_SOCKET", m.Socket())
	r1, _ := testPipe(t)
	r2, _ := testPipe(t)
	if err := sdnotify.Store("b-second", r2); err != nil {
		t.Fatal(err)
	}
	if err := sdnotify.Store("a-first", r1); err != nil {
		t.Fatal(err)
	}
	syncManager(t, m)
	pid, listenPID, fds, names, fdstore, open := startedEnv(t, m)
	if listenPID != strconv.Itoa(pid) {
		t.Errorf("LISTEN_PID=%s, the service's pid is %d", listenPID, pid)
	}
	if fds != "2" || names != "b-second:a-first" || fdstore != "8" {
		t.Errorf("LISTEN_FDS=%s LISTEN_FDNAMES=%s FDSTORE=%s; want 2, b-second:a-first (insertion order), 8", fds, names, fdstore)
	}
	if got := "," + strings.Join(open, ",") + ","; !strings.Contains(got, ",3,") || !strings.Contains(got, ",4,") {
		t.Errorf("descriptors open in the service: %s, want 3 and 4", got)
	}
}

// With an empty store nothing LISTEN_ is set (as systemd does), and the
// store survives the start for the next one.
func TestStartWithEmptyStoreSetsNoListenVariables(t *testing.T) {
	m := newTestManager(t, 8)
	_, listenPID, fds, names, _, _ := startedEnv(t, m)
	if listenPID != "" || fds != "" || names != "" {
		t.Fatalf("LISTEN_PID=%q LISTEN_FDS=%q LISTEN_FDNAMES=%q, want none", listenPID, fds, names)
	}
}

func TestDisabledStoreRefusesEverything(t *testing.T) {
	m := newTestManager(t, 0)
	if env := strings.Join(m.Env(), " "); strings.Contains(env, "FDSTORE") {
		t.Fatalf("Env of a disabled store %q sets FDSTORE", env)
	}
	r, w := testPipe(t)
	send(t, m, "FDSTORE=1\nFDNAME=x", r)
	syncManager(t, m)
	if st := m.Stats(); st.Refused != 1 || len(m.Names()) != 0 {
		t.Fatalf("stats %+v names %v", st, m.Names())
	}
	r.Close()
	if !readerGone(w) {
		t.Fatal("the refused descriptor was kept open")
	}
}

// Beyond FileDescriptorStoreMax= systemd closes the remaining descriptors.
func TestStoreMaxExceeded(t *testing.T) {
	m := newTestManager(t, 2)
	r1, _ := testPipe(t)
	r2, _ := testPipe(t)
	r3, w3 := testPipe(t)
	r4, w4 := testPipe(t)
	send(t, m, "FDSTORE=1\nFDNAME=first", r1, r2, r3)
	send(t, m, "FDSTORE=1\nFDNAME=second", r4)
	syncManager(t, m)
	if got := strings.Join(m.Names(), ","); got != "first,first" {
		t.Fatalf("store %s, want the first two descriptors", got)
	}
	if st := m.Stats(); st.Stored != 2 || st.Refused != 2 {
		t.Fatalf("stored %d refused %d, want 2 and 2", st.Stored, st.Refused)
	}
	r3.Close()
	r4.Close()
	if !readerGone(w3) || !readerGone(w4) {
		t.Fatal("a refused descriptor was kept open")
	}
}

// Entries that poll POLLHUP (a pipe whose writers are gone) are dropped
// before a start; FDPOLL=0 keeps them; a listener and a live pipe stay.
func TestStartDropsHungUpEntries(t *testing.T) {
	m := newTestManager(t, 8)
	t.Setenv("NOTIFY_SOCKET", m.Socket())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	live, _ := testPipe(t)
	dead, deadW := testPipe(t)
	kept, keptW := testPipe(t)
	for _, s := range []struct {
		name string
		f    *os.File
	}{{"proxy", lf}, {"out-live", live}, {"out-dead", dead}} {
		if err := sdnotify.Store(s.name, s.f); err != nil {
			t.Fatal(err)
		}
	}
	send(t, m, "FDSTORE=1\nFDNAME=out-nopoll\nFDPOLL=0", kept)
	syncManager(t, m)
	deadW.Close()
	keptW.Close()
	if got := strings.Join(m.Names(), ","); got != "proxy,out-live,out-dead,out-nopoll" {
		t.Fatalf("store before the start %s", got)
	}
	_, _, fds, names, _, _ := startedEnv(t, m)
	if fds != "3" || names != "proxy:out-live:out-nopoll" {
		t.Fatalf("start got LISTEN_FDS=%s LISTEN_FDNAMES=%s, want the hung-up pipe dropped", fds, names)
	}
	if st := m.Stats(); st.Dropped != 1 {
		t.Fatalf("dropped %d, want 1", st.Dropped)
	}
	if got := strings.Join(m.Names(), ","); got != "proxy,out-live,out-nopoll" {
		t.Fatalf("store after the start %s", got)
	}
}

// systemd keeps one copy of an open file however often it is stored.
func TestDuplicateIsNotStoredTwice(t *testing.T) {
	m := newTestManager(t, 8)
	r, w := testPipe(t)
	send(t, m, "FDSTORE=1\nFDNAME=a", r)
	send(t, m, "FDSTORE=1\nFDNAME=b", r, w) // r again, and the write end (same inode, other flags)
	syncManager(t, m)
	if got := strings.Join(m.Names(), ","); got != "a,b" {
		t.Fatalf("store %s, want a (read end) and b (write end)", got)
	}
	if st := m.Stats(); st.Duplicates != 1 || st.Stored != 2 {
		t.Fatalf("stats %+v, want 1 duplicate and 2 stored", st)
	}
}

func TestMalformedMessagesAreIgnored(t *testing.T) {
	m := newTestManager(t, 8)
	r, w := testPipe(t)
	send(t, m, "FDSTORE=1\x00\nFDNAME=nul", r)
	send(t, m, "no key value here", r)
	send(t, m, "FDSTORE=1\nFDNAME="+strings.Repeat("x", bufferSize), r) // truncated
	send(t, m, "=1", r)
	syncManager(t, m)
	st := m.Stats()
	if st.Malformed != 4 || st.Stored != 0 || len(m.Names()) != 0 {
		t.Fatalf("stats %+v names %v, want 4 malformed and nothing stored", st, m.Names())
	}
	r.Close()
	if !readerGone(w) {
		t.Fatal("a descriptor of a malformed message was kept open")
	}
}

// An invalid FDNAME= is ignored: the files are stored as "stored"
// (sd_notify(3)); FDSTOREREMOVE=1 needs a valid name.
func TestInvalidNames(t *testing.T) {
	m := newTestManager(t, 8)
	r1, _ := testPipe(t)
	r2, _ := testPipe(t)
	send(t, m, "FDSTORE=1\nFDNAME=a:b", r1)
	send(t, m, "FDSTORE=1", r2)
	send(t, m, "FDSTOREREMOVE=1\nFDNAME="+strings.Repeat("y", 256))
	send(t, m, "FDSTOREREMOVE=1")
	send(t, m, "FDSTOREREMOVE=1\nFDNAME=unknown-name")
	syncManager(t, m)
	if got := strings.Join(m.Names(), ","); got != "stored,stored" {
		t.Fatalf("store %s", got)
	}
	st := m.Stats()
	if st.InvalidNames != 3 || st.UnknownRemoves != 1 || st.Removed != 0 {
		t.Fatalf("stats %+v, want 3 invalid names, 1 unknown remove", st)
	}
}

// Files sent without FDSTORE=1 are closed, not stored.
func TestStrayDescriptorsAreClosed(t *testing.T) {
	m := newTestManager(t, 8)
	r, w := testPipe(t)
	send(t, m, "READY=1", r)
	syncManager(t, m)
	if st := m.Stats(); st.Stray != 1 || st.Ready != 1 || len(m.Names()) != 0 {
		t.Fatalf("stats %+v", st)
	}
	r.Close()
	if !readerGone(w) {
		t.Fatal("a stray descriptor was kept open")
	}
}

// Many senders at once: every datagram is handled, none lost or mixed.
func TestConcurrentStores(t *testing.T) {
	const senders, each = 16, 8
	m := newTestManager(t, senders*each)
	t.Setenv("NOTIFY_SOCKET", m.Socket())
	t.Setenv("FDSTORE", strconv.Itoa(senders*each))
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r, w, err := os.Pipe()
				if err != nil {
					errs <- err
					return
				}
				err = sdnotify.Store(fmt.Sprintf("out-%d-%d", s, i), r)
				r.Close()
				w.Close()
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	syncManager(t, m)
	names := map[string]bool{}
	for _, n := range m.Names() {
		names[n] = true
	}
	for s := 0; s < senders; s++ {
		for i := 0; i < each; i++ {
			if !names[fmt.Sprintf("out-%d-%d", s, i)] {
				t.Errorf("out-%d-%d missing", s, i)
			}
		}
	}
	if st := m.Stats(); st.Stored != senders*each || len(names) != senders*each {
		t.Fatalf("stored %d, %d names; want %d", st.Stored, len(names), senders*each)
	}
}

func TestWaitReadyWaitsForReadyAfterTheStart(t *testing.T) {
	m := newTestManager(t, 8)
	send(t, m, "READY=1")
	syncManager(t, m)
	m.Command("/bin/true") // a new start: the old READY=1 no longer counts
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady before the new READY=1: %v", err)
	}
	send(t, m, "STATUS=up\nREADY=1")
	if err := m.WaitReady(testContext(t)); err != nil {
		t.Fatal(err)
	}
	send(t, m, "STOPPING=1")
	syncManager(t, m)
	if got := strings.Join(m.Notifications(), ","); got != "READY=1,STATUS=up,READY=1,STOPPING=1" {
		t.Fatalf("notifications %s", got)
	}
}

// Close closes the stored descriptors and the socket; waiting afterwards
// fails at once.
func TestCloseReleasesTheStore(t *testing.T) {
	m, err := NewManager(t.TempDir(), 8)
	if err != nil {
		t.Fatal(err)
	}
	r, w := testPipe(t)
	send(t, m, "FDSTORE=1\nFDNAME=x", r)
	syncManager(t, m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !readerGone(w) {
		t.Fatal("a stored descriptor outlived Close")
	}
	if _, err := os.Stat(m.Socket()); !os.IsNotExist(err) {
		t.Fatalf("socket file after Close: %v", err)
	}
	if err := m.WaitReady(testContext(t)); err == nil {
		t.Fatal("WaitReady on a closed manager succeeded")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestResetEmptiesTheStore(t *testing.T) {
	m := newTestManager(t, 8)
	r, w := testPipe(t)
	send(t, m, "FDSTORE=1\nFDNAME=x", r)
	syncManager(t, m)
	m.Reset()
	if names := m.Names(); len(names) != 0 {
		t.Fatalf("store after Reset %v", names)
	}
	r.Close()
	if !readerGone(w) {
		t.Fatal("a stored descriptor outlived Reset")
	}
	_, _, fds, _, _, _ := startedEnv(t, m)
	if fds != "" {
		t.Fatalf("start after Reset got LISTEN_FDS=%s", fds)
	}
}
