package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// nobody is the uid of "another local user" in these tests (the
// impostor of a control socket, the writer of a state file).
const nobody = 65534

// requireRoot skips a test that acts as another local user (uid nobody),
// which only root can, with the reason.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test acts as another local user (uid 65534)")
	}
}

// sharedDir is a directory every local user may create files in, like
// /tmp: world-writable with the sticky bit.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rollbridge-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyExecutable copies the fixture where another user can run it (the
// test binaries live in a directory only root can enter).
func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// rollbridgeWithin is rollbridge with a deadline: a command that talks to
// an impostor could wait for ever (a follow stream that never ends).
func rollbridgeWithin(t *testing.T, dir string, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
	cmd.WaitDelay = time.Second
	return runToEnd(t, cmd)
}

// impostor is a fixture posing as the daemon on a control socket, run as
// another user.
type impostor struct {
	cmd    *exec.Cmd
	log    string        // every request line it read
	exited chan struct{} // closed once it has been reaped
}

// startImpostor runs exe -impostor sock as uid nobody; the status it
// answers carries this very build's daemonRuntime, so before the fix
// ensure-daemon accepted it as its own daemon.
func startImpostor(t *testing.T, exe, sock, log, status string) *impostor {
	t.Helper()
	cmd := exec.Command(exe, "-impostor", sock, "-impostor-status", status, "-impostor-log", log)
	cmd.Dir = filepath.Dir(sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	imp := &impostor{cmd: cmd, log: log, exited: exited}
	t.Cleanup(func() { imp.stop() })
	waitUntil(t, "the impostor to listen", 10*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("the impostor exited: %s", stderr.String())
		default:
		}
		fi, err := os.Lstat(sock)
		return err == nil && fi.Mode().Type() == fs.ModeSocket
	})
	return imp
}

func (imp *impostor) stop() {
	syscall.Kill(-imp.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-imp.exited:
	case <-time.After(10 * time.Second):
		panic("the impostor did not die after SIGKILL")
	}
}

// requests returns what the impostor was sent.
func (imp *impostor) requests() string {
	data, _ := os.ReadFile(imp.log)
	return string(data)
}

// A local user who binds the control path first (the default is in /tmp)
// must not be taken for the daemon: root's daemon refuses to start with
// the owner error (not "already running"), and no command sends it a
// request. Before the fix, `deploy --ensure-daemon` reported success and
// handed the impostor the release path, id and revision.
func TestImpostorSocketIsRefused(t *testing.T) {
	requireRoot(t)
	shared := sharedDir(t)
	exe := filepath.Join(shared, "impostor")
	copyExecutable(t, fixture, exe)
	sock := filepath.Join(shared, "app.sock")
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	writeConfig := func(control string) {
		body := fmt.Sprintf(`export default {
  application: "itest",
  control: {path: %q%s},
  statePath: %q,
  proxy: {port: 0},
  processes: [%s],
};
`, sock, control, filepath.Join(dir, "state.json"), strings.ReplaceAll(webProcess, "FIXTURE", fixture))
		if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("")
	rel := filepath.Join(dir, "releases", "r1")
	os.MkdirAll(rel, 0o755)
	logFile, pidFile := filepath.Join(dir, "daemon.log"), filepath.Join(dir, "daemon.pid")

	// The status the impostor answers names this build, as one that read
	// the world-readable binary would.
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	version := strings.TrimPrefix(strings.TrimSpace(rollbridge(t, dir, "--version").stdout), "rollbridge ")
	status := `{"status":"success","activeReleaseId":"impostor-v1","application":"itest","daemonRuntime":{"digest":"` + hex.EncodeToString(sum[:]) +
		`","format":1,"path":"/usr/local/bin","version":"` + version + `"},"proxy":{"host":"127.0.0.1","port":1,"upstreamHost":"127.0.0.1"},"releases":[]}`

	deployArgs := []string{"--release-path", rel, "--release-id", "secret-id", "--revision", "secret-rev"}
	ensureArgs := []string{"--daemon-log-path", logFile, "--daemon-pid-path", pidFile}
	commands := [][]string{
		{"status"}, {"logs"}, {"logs", "--follow"}, {"events"}, {"events", "--follow"},
		{"stop"}, {"rollback"}, {"restart"}, {"shutdown"},
		append([]string{"deploy"}, deployArgs...),
		append(append([]string{"deploy", "--ensure-daemon"}, deployArgs...), ensureArgs...),
		append([]string{"ensure-daemon"}, ensureArgs...),
		{"predeploy-cleanup", "--release-path", rel},
	}
	// refusedEverywhere runs every command that talks to a daemon and
	// expects each to refuse with want.
	refusedEverywhere := func(want string) {
		t.Helper()
		for _, args := range commands {
			r := rollbridgeWithin(t, dir, 15*time.Second, append(append(args[:1:1], "-c", config), args[1:]...)...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: "+want) {
				t.Errorf("%v:\n got %+v\nwant Error: %s…", args, r, want)
			}
		}
		if r := rollbridgeWithin(t, dir, 15*time.Second, "daemon", "-c", config); r.code != 1 || !strings.HasPrefix(r.stderr, "Error: "+want) || strings.Contains(r.stderr, "already running") {
			t.Errorf("daemon: %+v", r)
		}
		if r := rollbridgeWithin(t, dir, 15*time.Second, "recover", "-c", config, "--force"); r.code != 1 || !strings.HasPrefix(r.stderr, want) {
			t.Errorf("recover: %+v", r)
		}
		if r := rollbridgeWithin(t, dir, 15*time.Second, "doctor", "-c", config); r.code != 1 || !strings.Contains(r.stdout, "✗ control socket: "+want) {
			t.Errorf("doctor: %+v", r)
		}
		// A takeover candidate starts its release, then must not hand the
		// impostor its attestation in retire-owner.
		r := runDaemonOnce(t, dir, nil, "-c", config, "--release-path", rel, "--release-id", "t1", "--revision", "t1", "--boot-attestation", attestation, "--takeover-owner")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: takeover failed: "+want) {
			t.Errorf("takeover candidate: %+v", r)
		}
		for _, f := range []string{logFile, pidFile} {
			if _, err := os.Lstat(f); err == nil {
				t.Errorf("ensure-daemon created %s: it started a daemon next to the impostor", f)
			}
		}
	}

	// 1. The socket file belongs to nobody: refused before connecting.
	imp := startImpostor(t, exe, sock, filepath.Join(shared, "impostor.log"), status)
	who := "uid 65534 (nobody)"
	refusedEverywhere("Refusing to use the control socket " + sock + ": it is owned by " + who + ", and rollbridge only talks to a socket owned by root. ")
	if got := imp.requests(); got != "" {
		t.Fatalf("the impostor received requests:\n%s", got)
	}
	// control.owner names the user that may own the daemon's socket.
	writeConfig(`, owner: "nobody"`)
	if r := rollbridgeWithin(t, dir, 15*time.Second, "status", "-c", config); r.code != 0 || !strings.Contains(r.stdout, `"activeReleaseId": "impostor-v1"`) {
		t.Fatalf("status with control.owner naming the socket's owner: %+v", r)
	}
	writeConfig("")

	// 2. The socket file is root's, but nobody listens on it: refused
	// after connecting, before anything is written.
	imp.stop()
	os.Remove(sock)
	imp = startImpostor(t, exe, sock, filepath.Join(shared, "impostor2.log"), status)
	if err := os.Lchown(sock, 0, 0); err != nil {
		t.Fatal(err)
	}
	refusedEverywhere(fmt.Sprintf("Refusing to use the control socket %s: the process listening on it (pid %d) runs as %s, and rollbridge only talks to a daemon run by root. ", sock, imp.cmd.Process.Pid, who))
	if got := imp.requests(); got != "" {
		t.Fatalf("the impostor received requests:\n%s", got)
	}

	// 3. Once the impostor is gone, root's daemon takes the path (its stale
	// socket is root's now) and binds safely in the shared directory.
	imp.stop()
	d := &testDaemon{t: t, dir: dir, config: config, sock: sock, pids: map[int]bool{}}
	d.start()
	t.Cleanup(d.cleanup)
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("the daemon's socket: %v %v", fi.Mode(), err)
	}
	d.shutdown()
}

// modeWatch polls a directory and records every socket entry whose
// permissions are looser than want, and every private bind directory
// that others could enter.
type modeWatch struct {
	stop, done chan struct{}
	mu         sync.Mutex
	bad        []string
	polls      int
}

func watchModes(dir string, want fs.FileMode) *modeWatch {
	w := &modeWatch{stop: make(chan struct{}), done: make(chan struct{})}
	look := func() {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			fi, err := os.Lstat(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			loose := false
			switch {
			case fi.Mode().Type() == fs.ModeSocket:
				loose = fi.Mode().Perm()&^want != 0
			case fi.IsDir() && strings.HasPrefix(e.Name(), ".rollbridge-"):
				loose = fi.Mode().Perm() != 0o700
			}
			if loose {
				w.mu.Lock()
				w.bad = append(w.bad, fmt.Sprintf("%s %v", e.Name(), fi.Mode()))
				w.mu.Unlock()
			}
		}
		w.mu.Lock()
		w.polls++
		w.mu.Unlock()
	}
	go func() {
		defer close(w.done)
		for {
			look()
			select {
			case <-w.stop:
				look() // the state start-up ended in, however rarely this goroutine ran
				return
			default:
			}
		}
	}()
	return w
}

func (w *modeWatch) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if len(w.bad) > 0 {
		t.Errorf("looser entries were visible during start-up: %v", w.bad)
	}
	t.Logf("%d directory listings taken during start-up", w.polls)
}

// Under umask 000 the control socket still gets 0600 (or control.mode),
// and at no moment is a socket with looser permissions reachable in its
// directory. Before the fix it was srwxrwxrwx without control.mode: any
// local user could deploy a directory of their own and run code as root.
func TestControlSocketPermissions(t *testing.T) {
	dir := t.TempDir()
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{},
		wrap: []string{"sh", "-c", `umask 0; exec "$0" "$@"`}}
	t.Cleanup(d.cleanup)
	for _, tc := range []struct {
		control string
		want    fs.FileMode
	}{
		{"", 0o600},
		{`control: {path: "` + d.sock + `", mode: "660"},`, 0o660},
	} {
		d.writeConfig(tc.control + `processes: [` + webProcess + `]`)
		w := watchModes(dir, tc.want)
		d.start()
		w.finish(t)
		fi, err := os.Lstat(d.sock)
		if err != nil || fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != tc.want {
			t.Errorf("control %q: the socket is %v (%v), want %v", tc.control, fi.Mode(), err, tc.want)
		}
		if leftovers, _ := filepath.Glob(filepath.Join(dir, ".rollbridge-*")); len(leftovers) > 0 {
			t.Errorf("the private bind directory was left behind: %v", leftovers)
		}
		d.shutdown()
	}

	// A symbolic link planted at the control path is refused and neither
	// it nor its target is touched.
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	if err := os.Symlink(target, d.sock); err != nil {
		t.Fatal(err)
	}
	d.writeConfig(`control: {path: "` + d.sock + `", mode: "666"}, processes: [` + webProcess + `]`)
	r := runDaemonOnce(t, dir, nil, "-c", d.config)
	if r.code != 1 || r.stderr != "Error: Refusing to start: "+d.sock+" exists and is not a socket; remove it or choose another control.path\n" {
		t.Errorf("daemon with a link at control.path: %+v", r)
	}
	if r := rollbridge(t, dir, "status", "-c", d.config); r.code != 1 || !strings.HasPrefix(r.stderr, "Error: Refusing to use the control socket "+d.sock+": it is a symbolic link") {
		t.Errorf("status through a link: %+v", r)
	}
	fi, err := os.Stat(target)
	if data, _ := os.ReadFile(target); err != nil || string(data) != "keep" || fi.Mode() != 0o644 {
		t.Errorf("the link's target was changed: %v %q", fi.Mode(), data)
	}
	if fi, err := os.Lstat(d.sock); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Errorf("the link was touched: %v", err)
	}
	os.Remove(d.sock)
}

// ensure-daemon's log and pid files (by default predictable names in /tmp)
// are never opened through a link, never taken over from another user, and
// created 0600. Before the fix a link at either path made root append the
// daemon's log to, or write its pid over, any file.
func TestEnsureDaemonFiles(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	os.WriteFile(config, []byte(appConfig(dir, `processes: [`+webProcess+`]`)), 0o644)
	sock := filepath.Join(dir, "rb.sock")
	logFile, pidFile := filepath.Join(dir, "daemon.log"), filepath.Join(dir, "daemon.pid")
	ensure := func() result {
		return rollbridge(t, dir, "ensure-daemon", "-c", config, "--daemon-log-path", logFile, "--daemon-pid-path", pidFile)
	}
	// A daemon started by mistake (before the fix) is stopped again.
	stopDaemon := func() {
		if r := rollbridgeWithin(t, dir, 15*time.Second, "status", "-c", config); r.code == 0 {
			rollbridge(t, dir, "shutdown", "-c", config)
			waitUntil(t, "the ensured daemon to exit", 20*time.Second, func() bool { _, err := os.Lstat(sock); return err != nil })
		}
	}
	t.Cleanup(stopDaemon)
	victim := filepath.Join(dir, "victim")
	reset := func() {
		stopDaemon()
		for _, f := range []string{logFile, pidFile, victim} {
			os.Remove(f)
		}
		os.WriteFile(victim, []byte("keep\n"), 0o644)
	}
	nothingStarted := func(what string, keep string) {
		t.Helper()
		if data, _ := os.ReadFile(victim); string(data) != "keep\n" {
			t.Errorf("%s: the victim file was written: %q", what, data)
		}
		if _, err := os.Lstat(sock); err == nil {
			t.Errorf("%s: a daemon was started", what)
		}
		for _, f := range []string{logFile, pidFile} {
			if f == keep {
				continue
			}
			if _, err := os.Lstat(f); err == nil {
				t.Errorf("%s: %s was left behind", what, f)
			}
		}
	}
	advice := func(flag string) string {
		return ". Remove it, or pass " + flag + " with a path in a directory only you can write.\n"
	}

	reset()
	os.Symlink(victim, logFile)
	if r := ensure(); r.code != 1 || r.stderr != "Error: Refusing to use "+logFile+" as the daemon log: it is a symbolic link, and rollbridge does not follow links there"+advice("--daemon-log-path") {
		t.Errorf("link at the log path: %+v", r)
	}
	nothingStarted("link at the log path", logFile)

	reset()
	os.Symlink(victim, pidFile)
	if r := ensure(); r.code != 1 || r.stderr != "Error: Refusing to use "+pidFile+" as the daemon pid file: it is a symbolic link, and rollbridge does not follow links there"+advice("--daemon-pid-path") {
		t.Errorf("link at the pid path: %+v", r)
	}
	nothingStarted("link at the pid path", pidFile)

	reset()
	os.Link(victim, logFile)
	if r := ensure(); r.code != 1 || r.stderr != "Error: Refusing to use "+logFile+" as the daemon log: it has 2 hard links, so writing to it would change another file too"+advice("--daemon-log-path") {
		t.Errorf("hard link at the log path: %+v", r)
	}
	nothingStarted("hard link at the log path", logFile)

	if os.Geteuid() == 0 {
		reset()
		os.WriteFile(logFile, nil, 0o666)
		os.Chown(logFile, nobody, nobody)
		if r := ensure(); r.code != 1 || r.stderr != "Error: Refusing to use "+logFile+" as the daemon log: it belongs to uid 65534 (nobody), not to root, so that user could read or replace what is written there"+advice("--daemon-log-path") {
			t.Errorf("log owned by another user: %+v", r)
		}
		nothingStarted("log owned by another user", logFile)
	} else {
		t.Log("not root: the case of a log file owned by another user is skipped")
	}

	reset()
	if r := ensure(); r.code != 0 {
		t.Fatalf("ensure-daemon: %+v", r)
	}
	for _, f := range []string{logFile, pidFile} {
		fi, err := os.Lstat(f)
		if err != nil || fi.Mode() != 0o600 {
			t.Errorf("%s: %v %v, want -rw-------", f, fi.Mode(), err)
		}
	}
	data, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSuffix(string(data), "\n"))
	if err != nil || !alive(pid) || !strings.HasSuffix(string(data), "\n") {
		t.Fatalf("pid file %q", data)
	}
	// A second run finds the daemon; an older, longer pid file is
	// rewritten, not overwritten in place.
	os.WriteFile(pidFile, []byte("123456789012\n"), 0o600)
	os.Chmod(logFile, 0o644) // as an earlier version left it
	stopDaemon()
	waitUntil(t, "the first daemon to exit", 20*time.Second, func() bool { return !alive(pid) })
	if r := ensure(); r.code != 0 {
		t.Fatalf("second ensure-daemon: %+v", r)
	}
	if data, _ := os.ReadFile(pidFile); strings.Count(string(data), "\n") != 1 || strings.Contains(string(data), "123456789012") {
		t.Errorf("pid file after a restart %q", data)
	}
	if fi, err := os.Lstat(logFile); err != nil || fi.Mode() != 0o600 {
		t.Errorf("a 0644 log file left by an earlier version: %v %v, want -rw-------", fi.Mode(), err)
	}
}
