package control

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listenAt serves one status-like answer per request at path and counts
// the requests it read.
func listenAt(t *testing.T, path string) *atomic.Int32 {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var requests atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					return
				}
				requests.Add(1)
				c.Write([]byte(`{"status":"success","application":"impostor","activeReleaseId":null}` + "\n"))
			}()
		}
	}()
	return &requests
}

// A socket file owned by a user the client does not trust is refused
// before anything is sent; control.owner widens the trust to that user.
// (The listening process's uid, checked with SO_PEERCRED, is covered by
// the integration tests, which run a listener as another user.)
func TestEndpointRefusesASocketOwnedByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the socket file to another user (uid 65534)")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "app.sock")
	requests := listenAt(t, path)
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	ep := Endpoint{Path: path}
	_, err := Call(ep, []byte(`{"command":"status"}`), time.Second)
	var oe *OwnerError
	if !errors.As(err, &oe) || oe.UID != 65534 || oe.Peer {
		t.Fatalf("Call: %v", err)
	}
	want := `Refusing to use the control socket ` + path + `: it is owned by uid 65534`
	if name := userName(65534); name != "" {
		want += " (" + name + ")"
	}
	if msg := err.Error(); !strings.HasPrefix(msg, want+", and rollbridge only talks to a socket owned by root. ") || !strings.Contains(msg, `"ls -ln `+path+`"`) || !strings.Contains(msg, "set control.owner to that user") {
		t.Fatalf("message %q", msg)
	}
	if NoDaemon(err) {
		t.Fatal("an untrusted socket must not read as \"no daemon\" (ensure-daemon would start one and report the impostor's status)")
	}
	if _, err := Dial(ep); !errors.As(err, &oe) {
		t.Fatalf("Dial: %v", err)
	}
	if _, _, err := CallWithFiles(ep, []byte(`{"command":"status"}`)); !errors.As(err, &oe) {
		t.Fatalf("CallWithFiles: %v", err)
	}
	if _, err := Probe(ep); !errors.As(err, &oe) {
		t.Fatalf("Probe: %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the untrusted listener received %d requests", n)
	}
	// The same socket with its owner named in control.owner.
	if raw, err := Call(Endpoint{Path: path, Owner: 65534}, []byte(`{"command":"status"}`), time.Second); err != nil || !strings.Contains(string(raw), "impostor") {
		t.Fatalf("trusted owner: %s %v", raw, err)
	}
	// A stale socket of another user is refused too: nothing tells it
	// from a listener that is about to come back.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	os.Lchown(stale, 65534, 65534)
	if _, err := Probe(Endpoint{Path: stale}); !errors.As(err, &oe) {
		t.Fatalf("Probe of another user's stale socket: %v", err)
	}
}

// A symbolic link at the control path is never followed; a file that is
// not a socket answers as connect(2) would.
func TestEndpointDoesNotFollowLinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.sock")
	requests := listenAt(t, target)
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, err := Call(Endpoint{Path: link}, []byte(`{"command":"status"}`), time.Second)
	var le *LinkError
	if !errors.As(err, &le) || err.Error() != "Refusing to use the control socket "+link+": it is a symbolic link, and rollbridge does not follow links at control.path. Set control.path to the socket itself, or remove the link." {
		t.Fatalf("link: %v", err)
	}
	if res, err := Probe(Endpoint{Path: link}); err != nil || res.Alive {
		t.Fatalf("probe through a link: %+v %v", res, err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the socket behind the link received %d requests", n)
	}
	if _, err := Call(Endpoint{Path: target}, []byte(`{"command":"status"}`), time.Second); err != nil {
		t.Fatalf("the socket itself: %v", err)
	}
}
