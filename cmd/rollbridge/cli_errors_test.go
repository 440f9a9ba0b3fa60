package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// rollbridgeEnv runs the built binary in dir with extra environment, for
// at most 30 s.
func rollbridgeEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = time.Second
	return runToEnd(t, cmd)
}

// socketHint is the line a config-load failure of status, logs, events,
// stop and shutdown ends with.
const socketHint = "To reach the running daemon without loading this config, pass --socket <control.path> (default /tmp/rollbridge-<application>.sock) or set ROLLBRIDGE_SOCKET.\n"

// -c wins over ROLLBRIDGE_CONFIG, which wins over ./rollbridge.js; a
// missing config says it is the config and who named it.
func TestConfigLookupOrderAndMissingConfig(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, app string) {
		body := `export default {application: "` + app + `", control: {path: "` + filepath.Join(dir, app+".sock") + `"}, proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};`
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rollbridge.js", "dflt")
	write("env.js", "fromenv")
	write("flag.js", "fromflag")
	env := []string{"ROLLBRIDGE_CONFIG=env.js"}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"validate"}, dir + "/rollbridge.js is valid"},
		{env, []string{"validate"}, "env.js is valid"},
		{env, []string{"validate", "-c", "flag.js"}, "flag.js is valid"},
		{[]string{"ROLLBRIDGE_CONFIG="}, []string{"validate"}, dir + "/rollbridge.js is valid"},
	} {
		if r := rollbridgeEnv(t, dir, tc.env, tc.args...); r.code != 0 || !strings.HasPrefix(r.stdout, tc.want) {
			t.Errorf("%v %v: %+v, want %s…", tc.env, tc.args, r, tc.want)
		}
	}
	// The commands that talk to the daemon read the same config: the
	// socket in the error names it.
	for _, tc := range []struct {
		env  []string
		args []string
		app  string
	}{
		{nil, []string{"status"}, "dflt"},
		{env, []string{"status"}, "fromenv"},
		{env, []string{"status", "-c", "flag.js"}, "fromflag"},
		{env, []string{"-c", "flag.js", "deploy", "--release-path", dir}, "fromflag"},
	} {
		r := rollbridgeEnv(t, dir, tc.env, tc.args...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: connect ENOENT "+filepath.Join(dir, tc.app+".sock")+"\n") {
			t.Errorf("%v %v: %+v, want the socket of %s", tc.env, tc.args, r, tc.app)
		}
	}

	empty := t.TempDir()
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"status", "-c", "nope.js"}, "Error: ENOENT: no such file or directory, open '" + empty + "/nope.js'\n" +
			"The config file " + empty + "/nope.js does not exist (named by -c). Pass the path of the application's rollbridge.js.\n" + socketHint},
		{[]string{"ROLLBRIDGE_CONFIG=gone.js"}, []string{"logs"}, "Error: ENOENT: no such file or directory, open '" + empty + "/gone.js'\n" +
			"The config file " + empty + "/gone.js does not exist (named by $ROLLBRIDGE_CONFIG; -c overrides it). Fix the variable or pass -c <path>.\n" + socketHint},
		{nil, []string{"deploy", "--release-path", empty}, "Error: No config file found in " + empty + ". Pass --config <path> or add one of: rollbridge.js.\n" +
			"rollbridge reads the config named by -c <path>, else by $ROLLBRIDGE_CONFIG, else ./rollbridge.js in the current directory.\n"},
	} {
		r := rollbridgeEnv(t, empty, tc.env, tc.args...)
		if r.code != 1 || r.stdout != "" || r.stderr != tc.want {
			t.Errorf("%v %v:\n got %q\nwant %q", tc.env, tc.args, r.stderr, tc.want)
		}
	}
}

// No daemon: the first line stays `connect ENOENT <path>` (scripts match
// it) and the next says how to start one; a socket nobody listens on says
// the daemon died.
func TestNoDaemonHints(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "rb.sock")
	config := filepath.Join(dir, "app.js")
	body := `export default {application: "hint", control: {path: "` + sock + `"}, proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};`
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	start := `"rollbridge ensure-daemon -c ` + config + `"`
	enoent := "Error: connect ENOENT " + sock + "\nNo daemon is running on this socket. Start one with " + start
	check := func(want string, args ...string) {
		t.Helper()
		if r := rollbridge(t, dir, args...); r.code != 1 || r.stdout != "" || r.stderr != want {
			t.Errorf("%v:\n got %q\nwant %q", args, r.stderr, want)
		}
	}
	check(enoent+".\n", "status", "-c", config)
	check(enoent+".\n", "stop", "-c", config)
	check(enoent+", or run this deploy again with --ensure-daemon.\n", "deploy", "-c", config, "--release-path", dir)
	check("Error: connect ENOENT "+sock+"\nNo daemon is running on this socket. Start one with \"rollbridge ensure-daemon -c <config>\".\n", "events", "--socket", sock)

	// A socket file left by a daemon that was killed: bound, not listening.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	t.Cleanup(func() { os.Remove(sock) })
	refused := "Error: connect ECONNREFUSED " + sock + "\nThe daemon that created this socket is no longer running (it crashed or was killed). Start a new one, which replaces the stale socket, with " + start
	recoverHint := `; "rollbridge recover -c ` + config + `" lists the processes the old one left behind.` + "\n"
	check(refused+recoverHint, "logs", "-c", config)
	check(refused+", or run this deploy again with --ensure-daemon"+recoverHint, "deploy", "-c", config, "--release-path", dir)

	// A file that is not a socket at control.path.
	os.Remove(sock)
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	check("Error: connect ECONNREFUSED "+sock+"\n"+sock+" is not a socket: check control.path (or --socket).\n", "status", "-c", config)
}

// Options written before the command work as after it.
func TestOptionsBeforeTheCommand(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "app.js")
	if err := os.WriteFile(config, []byte(`export default {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};`), 0o644); err != nil {
		t.Fatal(err)
	}
	after := rollbridge(t, dir, "validate", "-c", config, "--json")
	before := rollbridge(t, dir, "-c", config, "--json", "validate")
	if after.code != 0 || before != after {
		t.Errorf("options before validate:\n%+v\nafter it:\n%+v", before, after)
	}
	// The value of -c is not taken for the command.
	if r := rollbridge(t, dir, "-c", "status", "validate"); r.code != 1 || !strings.Contains(r.stderr, "Found 1 configuration issue in status:") {
		t.Errorf("-c status validate: %+v", r)
	}
	if r := rollbridge(t, dir, "--force", "status"); r.code != 1 || !strings.HasPrefix(r.stderr, "error: unknown option '--force'\n\n") {
		t.Errorf("an option status does not have: %+v", r)
	}
}

// Every command refuses stray words before it loads the config or sends
// anything: the daemon sees no operation and the active release keeps
// serving.
func TestStrayArgumentsChangeNothing(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	// The same config, printing when it is loaded.
	noisy := filepath.Join(d.dir, "noisy.js")
	data, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(noisy, append([]byte("console.log(\"config loaded\");\n"), data...), 0o644); err != nil {
		t.Fatal(err)
	}
	before := messages(d.events())
	rel := filepath.Join(d.dir, "releases", "v2")
	os.MkdirAll(rel, 0o755)
	takesNone := func(cmd, word string) string {
		return `Error: unexpected argument "` + word + `": "rollbridge ` + cmd + `" takes no arguments, only options (see "rollbridge ` + cmd + ` --help").` + "\n"
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stop", "v1"}, `Error: unexpected argument "v1"; did you mean --release-id v1?` + "\n"},
		{[]string{"stop", "--yes", "v1"}, `Error: unexpected argument "v1"; did you mean --release-id v1?` + "\n"},
		{[]string{"rollback", "v1"}, `Error: unexpected argument "v1"; did you mean --release-id v1?` + "\n"},
		{[]string{"restart", "web"}, `Error: unexpected argument "web"; did you mean --process web?` + "\n"},
		{[]string{"shutdown", "now"}, takesNone("shutdown", "now")},
		{[]string{"deploy", rel}, `Error: unexpected argument "` + rel + `"; did you mean --release-path ` + rel + `?` + "\n"},
		{[]string{"deploy", "--release-path", rel, "v2"}, `Error: unexpected argument "v2"; did you mean --release-id v2?` + "\n"},
		{[]string{"status", "x"}, takesNone("status", "x")},
		{[]string{"logs", "web"}, `Error: unexpected argument "web"; did you mean --process web?` + "\n"},
		{[]string{"events", "5"}, `Error: unexpected argument "5"; did you mean --limit 5?` + "\n"},
		{[]string{"ensure-daemon", "x"}, takesNone("ensure-daemon", "x")},
		{[]string{"validate", "x"}, takesNone("validate", "x")},
		{[]string{"doctor", rel}, `Error: unexpected argument "` + rel + `"; did you mean --release-path ` + rel + `?` + "\n"},
		{[]string{"predeploy-cleanup", "x"}, takesNone("predeploy-cleanup", "x")},
		{[]string{"recover", "--force", "x"}, takesNone("recover", "x")},
		{[]string{"daemon", "x"}, takesNone("daemon", "x")},
	} {
		args := append(append(tc.args[:1:1], "-c", noisy), tc.args[1:]...)
		r := rollbridgeWithin(t, d.dir, 15*time.Second, args...)
		if r.code != 1 || r.stdout != "" || r.stderr != tc.want {
			t.Errorf("%v:\n got %+v\nwant stderr %q, stdout empty (config not loaded)", tc.args, r, tc.want)
		}
	}
	if got := messages(d.events()); !reflect.DeepEqual(got, before) {
		t.Errorf("the daemon recorded events:\nbefore %q\nafter  %q", before, got)
	}
	if code, body := d.get("/release"); code != 200 || body != "v1" {
		t.Errorf("the site: %d %q, want v1 serving", code, body)
	}
}
