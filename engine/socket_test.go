package engine

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
)

// deepDir returns a directory under t.TempDir() whose path is exactly n
// bytes long.
func deepDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	for len(dir) < n {
		k := min(50, n-len(dir)-1) // each component costs its "/" too
		if n-len(dir)-1-k == 1 {
			k-- // never leave a remainder of 1: "/" alone adds no name
		}
		if k <= 0 {
			t.Fatalf("cannot make a %d-byte directory under %s", n, dir)
		}
		dir = filepath.Join(dir, strings.Repeat("d", k))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(dir) != n {
		t.Fatalf("made %d bytes, want %d", len(dir), n)
	}
	return dir
}

// A control.path whose directory is too long for the private directory's
// socket address is still bound privately (through /proc/self/fd), and
// gets the default mode 0600.
func TestListenControlInALongDirectory(t *testing.T) {
	dir := deepDir(t, maxBindDir+10)
	path := filepath.Join(dir, "app.sock")
	if len(path) > maxSocketPath {
		t.Fatalf("test setup: %d-byte path", len(path))
	}
	sock, err := listenControl(jsconfig.Control{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.listener.Close(); sock.remove() })
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".rollbridge-*")); len(left) != 0 {
		t.Fatalf("private directory left behind: %v", left)
	}
	go func() {
		c, err := sock.listener.Accept()
		if err == nil {
			c.Close()
		}
	}()
	c, err := control.Dial(ControlEndpoint(jsconfig.Control{Path: path}))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
}

// A path no socket address can hold is refused up front, with the limit.
func TestControlPathTooLong(t *testing.T) {
	path := "/" + strings.Repeat("x", maxSocketPath)
	want := "control.path " + path + " is 108 bytes long; a Unix socket path can have at most 107. Choose a shorter control.path."
	if err := CheckControlSocket(jsconfig.Control{Path: path}); err == nil || err.Error() != want {
		t.Fatalf("got %v", err)
	}
}

// Whatever appeared at the control path while the socket was being set up
// is never replaced, and the bound socket does not stay behind.
func TestPublishNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.sock")
	bind, err := newPrivateBind(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := bind.listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := bind.chmod(0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("planted"), 0o644)
	if _, err := bind.publish(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("publish over an existing file: %v", err)
	}
	bind.close()
	if data, _ := os.ReadFile(path); string(data) != "planted" {
		t.Fatalf("the planted file was replaced: %q", data)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".rollbridge-*")); len(left) != 0 {
		t.Fatalf("private directory left behind: %v", left)
	}
}

// control.owner widens whom the client trusts; a name that does not
// resolve adds nobody.
func TestControlEndpoint(t *testing.T) {
	for _, tc := range []struct {
		owner *jsconfig.IDOrName
		want  int
	}{
		{nil, 0},
		{&jsconfig.IDOrName{ID: 1234}, 1234},
		{&jsconfig.IDOrName{Name: "1234"}, 1234},
		{&jsconfig.IDOrName{Name: "root"}, 0},
		{&jsconfig.IDOrName{Name: "no-such-user-" + strconv.FormatInt(time.Now().UnixNano(), 36)}, 0},
	} {
		ep := ControlEndpoint(jsconfig.Control{Path: "/run/app.sock", Owner: tc.owner})
		if ep.Path != "/run/app.sock" || ep.Owner != tc.want {
			t.Errorf("%+v: %+v", tc.owner, ep)
		}
	}
}
