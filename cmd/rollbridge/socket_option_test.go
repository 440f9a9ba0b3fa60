package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A config that no longer loads does not lock the operator out: status,
// logs, events, stop and shutdown reach the daemon with --socket or
// ROLLBRIDGE_SOCKET, without loading it, and the load error says so.
func TestSocketOptionReachesDaemonWithBrokenConfig(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	good, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	// Runs before d.cleanup, which needs the config to shut the daemon down.
	t.Cleanup(func() { os.WriteFile(d.config, good, 0o644) })
	if err := os.WriteFile(d.config, []byte("export default {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"logs"}, {"events"}, {"stop"}, {"shutdown"}} {
		r := d.cli(args...)
		if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "Error: ") || !strings.HasSuffix(r.stderr, "\n"+socketHint) {
			t.Errorf("%v with a broken config: %+v", args, r)
		}
	}
	if r := rollbridge(t, d.dir, "status", "-c", d.config, "--socket", d.sock); r.code != 1 ||
		!strings.HasPrefix(r.stderr, "error: option '--socket <path>' cannot be used with option '-c, --config <path>'\n\n") {
		t.Errorf("--socket with -c: %+v", r)
	}
	if r := rollbridge(t, d.dir, "status", "--socket="); r.code != 1 || r.stderr != "Error: --socket needs the path of the daemon's control socket (control.path in its config).\n" {
		t.Errorf("--socket with an empty path: %+v", r)
	}

	// d.dir holds the broken rollbridge.js: the default lookup would fail.
	viaFlag := func(args ...string) result { return rollbridge(t, d.dir, append(args, "--socket", d.sock)...) }
	viaEnv := func(args ...string) result {
		return rollbridgeEnv(t, d.dir, []string{"ROLLBRIDGE_SOCKET=" + d.sock}, args...)
	}
	for name, run := range map[string]func(...string) result{"--socket": viaFlag, "ROLLBRIDGE_SOCKET": viaEnv} {
		r := run("status")
		var s struct{ ActiveReleaseID string }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &s) != nil || s.ActiveReleaseID != "v1" {
			t.Errorf("status via %s: %+v", name, r)
		}
		if r := run("logs", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"id": "web"`) {
			t.Errorf("logs via %s: %+v", name, r)
		}
		if r := run("events"); r.code != 0 || !strings.Contains(r.stdout, "traffic switched") {
			t.Errorf("events via %s: %+v", name, r)
		}
	}
	// Without a config the stop has no bound: it waits as long as the
	// stop takes. Piped stdin: no question.
	if r := viaFlag("stop"); r.code != 0 || !strings.Contains(r.stdout, `"activeReleaseId": null`) || r.stderr != "" {
		t.Fatalf("stop via --socket: %+v", r)
	}
	if code, _ := d.get("/release"); code != 503 {
		t.Errorf("after the stop the proxy answered %d, want 503", code)
	}
	if r := viaEnv("shutdown"); r.code != 0 || r.stdout != "{\n  \"status\": \"success\",\n  \"message\": \"shutdown\"\n}\n" {
		t.Fatalf("shutdown via ROLLBRIDGE_SOCKET: %+v", r)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not exit after the shutdown")
	}
}

// --socket keeps the socket trust checks, and without a config there is
// no control.owner: a socket of another user is refused even when the
// config would have trusted that user, and nothing is sent to it.
func TestSocketOptionKeepsSocketTrust(t *testing.T) {
	requireRoot(t)
	shared := sharedDir(t)
	exe := filepath.Join(shared, "impostor")
	copyExecutable(t, fixture, exe)
	sock := filepath.Join(shared, "app.sock")
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	body := fmt.Sprintf(`export default {application: "itest", control: {path: %q, owner: "nobody"}, proxy: {port: 0}, processes: [%s]};`,
		sock, strings.ReplaceAll(webProcess, "FIXTURE", fixture))
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	status := `{"status":"success","activeReleaseId":"impostor-v1","application":"itest","releases":[]}`
	imp := startImpostor(t, exe, sock, filepath.Join(shared, "impostor.log"), status)
	// control.owner in the config names the socket's owner: trusted.
	if r := rollbridgeWithin(t, dir, 15*time.Second, "status", "-c", config); r.code != 0 || !strings.Contains(r.stdout, `"impostor-v1"`) {
		t.Fatalf("status with control.owner: %+v", r)
	}
	log := imp.requests()
	want := "Error: Refusing to use the control socket " + sock + ": it is owned by uid 65534 (nobody), and rollbridge only talks to a socket owned by root. "
	for _, args := range [][]string{{"status"}, {"logs"}, {"logs", "--follow"}, {"events"}, {"events", "--follow"}, {"stop", "--yes"}, {"shutdown"}} {
		r := rollbridgeWithin(t, dir, 15*time.Second, append(args, "--socket", sock)...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, want) {
			t.Errorf("%v --socket:\n got %+v\nwant %s…", args, r, want)
		}
		cmd := append(args[:1:1], args[1:]...)
		r = rollbridgeEnv(t, dir, []string{"ROLLBRIDGE_SOCKET=" + sock}, cmd...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, want) {
			t.Errorf("%v with ROLLBRIDGE_SOCKET:\n got %+v\nwant %s…", args, r, want)
		}
	}
	if got := imp.requests(); got != log {
		t.Fatalf("the impostor received requests through --socket:\n%s", strings.TrimPrefix(got, log))
	}
}
