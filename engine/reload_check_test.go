package engine

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge/engine/control"
)

// fakeDaemon answers every control request on a socket with reply (or
// closes the connection at once when reply is ""), and records the
// requests it read.
func fakeDaemon(t *testing.T, reply string) (control.Endpoint, chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rb.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	requests := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			requests <- line
			if reply != "" {
				c.Write([]byte(reply + "\n"))
			}
			c.Close()
		}
	}()
	return control.Endpoint{Path: path}, requests
}

func TestReloadCheckAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, reply string
		wantNil     bool
		ok, warning bool
		detail      string
	}{
		{"compatible", `{"status":"success","compatible":true,"configPath":"/etc/rollbridge/shop.js"}`, true, false, false, ""},
		{"incompatible", `{"status":"success","changes":["processes[1] \"worker\": replicas 2 → 3","proxy.port: 1 → 2"],"compatible":false,"configPath":"/etc/rollbridge/shop.js","message":"Config changes to processes cannot be applied live; restart the Rollbridge daemon before deploying."}`,
			false, false, false, "the running daemon would refuse /etc/rollbridge/shop.js at the next deploy: Config changes to processes cannot be applied live; restart the Rollbridge daemon before deploying.\n  processes[1] \"worker\": replicas 2 → 3\n  proxy.port: 1 → 2"},
		// The daemon reloads its own file: an answer about another file
		// than the one doctor checked is a warning that says so.
		{"compatible, another file", `{"status":"success","compatible":true,"configPath":"/etc/rollbridge/other.js"}`,
			false, true, true, "the running daemon loads its config from /etc/rollbridge/other.js, not /etc/rollbridge/shop.js, so this check cannot judge /etc/rollbridge/shop.js (the next deploy reads the daemon's file); the daemon would adopt it"},
		{"incompatible, another file", `{"status":"success","changes":["proxy.port: 1 → 2"],"compatible":false,"configPath":"/etc/rollbridge/other.js","message":"Config changes to proxy.port cannot be applied live; restart the Rollbridge daemon before deploying."}`,
			false, true, true, "the running daemon loads its config from /etc/rollbridge/other.js, not /etc/rollbridge/shop.js, so this check cannot judge /etc/rollbridge/shop.js (the next deploy reads the daemon's file); the daemon would refuse it at the next deploy: Config changes to proxy.port cannot be applied live; restart the Rollbridge daemon before deploying.\n  proxy.port: 1 → 2"},
		{"a daemon that does not know the command", `{"error":"Unknown command: check-reload","status":"error"}`,
			false, true, true, "the running daemon cannot compare configs (it predates this check); a deploy will still refuse changes that need a daemon restart"},
		{"the daemon's config does not load", `{"error":"Invalid Rollbridge config:\n  - proxy.port must be a number","status":"error"}`,
			false, false, false, "the running daemon cannot load its config, so the next deploy would fail: Invalid Rollbridge config:\n  - proxy.port must be a number"},
		{"a daemon that hangs up", "", false, true, true, "could not ask the running daemon whether it can adopt the config: "},
		{"an answer that is not an object", `{"status":"success","compatible":"yes"}`, false, true, true, "the running daemon's answer could not be read: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, requests := fakeDaemon(t, tc.reply)
			c := reloadCheck(ep, "/etc/rollbridge/shop.js")
			if got := <-requests; got != `{"command":"check-reload"}`+"\n" {
				t.Fatalf("request %q", got)
			}
			if tc.wantNil {
				if c != nil {
					t.Fatalf("unexpected check %+v", *c)
				}
				return
			}
			if c == nil {
				t.Fatal("no check")
			}
			if c.Name != "config reload" || c.OK != tc.ok || c.Warning != tc.warning || !detailMatches(c.Detail, tc.detail) {
				t.Fatalf("got %+v\nwant ok %v warning %v detail %q", *c, tc.ok, tc.warning, tc.detail)
			}
		})
	}
}

// detailMatches is an exact match, or a prefix one for a want ending in
// ": " (an error text of the system follows).
func detailMatches(got, want string) bool {
	return got == want || strings.HasSuffix(want, ": ") && strings.HasPrefix(got, want)
}

// A config reached through a symlink is the daemon's own file: no warning.
func TestReloadCheckSameFileByAnotherName(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "rollbridge.js")
	link := filepath.Join(dir, "link.js")
	if err := os.WriteFile(real, []byte("export default {}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	ep, _ := fakeDaemon(t, `{"status":"success","compatible":true,"configPath":"`+real+`"}`)
	if c := reloadCheck(ep, link); c != nil {
		t.Fatalf("unexpected check %+v", *c)
	}
	other := filepath.Join(dir, "other.js")
	if err := os.WriteFile(other, []byte("export default {}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := reloadCheck(ep, other); c == nil || !c.Warning {
		t.Fatalf("another file: %+v", c)
	}
}
