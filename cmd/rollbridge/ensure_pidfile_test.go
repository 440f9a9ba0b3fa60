package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ensuredDaemon is a daemon started by ensure-daemon. It is not the
// test's child (it runs in its own session), so it is watched and, at the
// end, stopped by its pid.
type ensuredDaemon struct {
	t                         *testing.T
	dir, config, pidFile, env string
	pid                       int
}

// startEnsured runs ensure-daemon for a config of one web process that
// writes its environment to e.env.
func startEnsured(t *testing.T) *ensuredDaemon {
	t.Helper()
	dir := t.TempDir()
	e := &ensuredDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), pidFile: filepath.Join(dir, "run", "daemon.pid"), env: filepath.Join(dir, "web.env")}
	body := `processes: [{id: "web", policy: "proxied", command: "env > ` + e.env + `; exec FIXTURE -listen", port: {from: 20000, to: 20999}, health: {intervalMs: 20}}]`
	if err := os.WriteFile(e.config, []byte(appConfig(dir, body)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := rollbridge(t, dir, "ensure-daemon", "-c", e.config, "--daemon-log-path", filepath.Join(dir, "daemon.log"), "--daemon-pid-path", e.pidFile)
	if r.code != 0 {
		t.Fatalf("ensure-daemon: %+v", r)
	}
	data, err := os.ReadFile(e.pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if e.pid, err = strconv.Atoi(strings.TrimSpace(string(data))); err != nil || !alive(e.pid) {
		t.Fatalf("pid file %q: %v", data, err)
	}
	t.Cleanup(func() {
		if alive(e.pid) {
			rollbridge(t, dir, "shutdown", "-c", e.config)
		}
		deadline := time.Now().Add(30 * time.Second)
		for alive(e.pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(e.pid) {
			syscall.Kill(e.pid, syscall.SIGKILL)
			t.Error("the ensured daemon had to be killed at the end of the test")
		}
	})
	return e
}

func (e *ensuredDaemon) deploy(id string) {
	e.t.Helper()
	rel := filepath.Join(e.dir, "releases", id)
	os.MkdirAll(rel, 0o755)
	if r := rollbridge(e.t, e.dir, "deploy", "-c", e.config, "--release-path", rel, "--release-id", id); r.code != 0 {
		e.t.Fatalf("deploy %s: %+v", id, r)
	}
}

func (e *ensuredDaemon) shutdown() {
	e.t.Helper()
	if r := rollbridge(e.t, e.dir, "shutdown", "-c", e.config); r.code != 0 {
		e.t.Fatalf("shutdown: %+v", r)
	}
}

func (e *ensuredDaemon) waitExit() {
	e.t.Helper()
	waitUntil(e.t, "the ensured daemon to exit", 30*time.Second, func() bool { return !alive(e.pid) })
}

// The daemon ensure-daemon started removes its pid file when it ends
// (shutdown, SIGTERM, retirement after a takeover), but only while the
// file still names it; the path reaches it through the environment, which
// its processes do not inherit.
func TestEnsuredDaemonRemovesItsPIDFile(t *testing.T) {
	gone := func(t *testing.T, path string) {
		t.Helper()
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			data, _ := os.ReadFile(path)
			t.Errorf("the pid file %s is still there (%q, %v)", path, data, err)
		}
	}
	t.Run("shutdown", func(t *testing.T) {
		e := startEnsured(t)
		e.deploy("v1")
		env, err := os.ReadFile(e.env)
		if err != nil || !strings.Contains(string(env), "ROLLBRIDGE_PORT=") {
			t.Fatalf("the web process's environment: %q %v", env, err)
		}
		if strings.Contains(string(env), "ROLLBRIDGE_ENSURED_PID_FILE") {
			t.Errorf("the pid file's path reached the managed process:\n%s", env)
		}
		e.shutdown()
		e.waitExit()
		gone(t, e.pidFile)
	})
	t.Run("SIGTERM", func(t *testing.T) {
		e := startEnsured(t)
		if err := syscall.Kill(e.pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		e.waitExit()
		gone(t, e.pidFile)
	})
	t.Run("rewritten with another pid", func(t *testing.T) {
		e := startEnsured(t)
		other := strconv.Itoa(os.Getpid()) + "\n"
		if err := os.WriteFile(e.pidFile, []byte(other), 0o600); err != nil {
			t.Fatal(err)
		}
		e.shutdown()
		e.waitExit()
		if data, err := os.ReadFile(e.pidFile); err != nil || string(data) != other {
			t.Errorf("someone else's pid file: %q %v", data, err)
		}
	})
	t.Run("replaced by a link", func(t *testing.T) {
		e := startEnsured(t)
		target := filepath.Join(e.dir, "elsewhere.pid")
		own := strconv.Itoa(e.pid) + "\n"
		if err := os.WriteFile(target, []byte(own), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(e.pidFile)
		if err := os.Symlink(target, e.pidFile); err != nil {
			t.Fatal(err)
		}
		e.shutdown()
		e.waitExit()
		if fi, err := os.Lstat(e.pidFile); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link at the pid file's path: %v %v", fi, err)
		}
		if data, err := os.ReadFile(target); err != nil || string(data) != own {
			t.Errorf("the file behind the link: %q %v", data, err)
		}
	})
	t.Run("retired by a takeover", func(t *testing.T) {
		e := startEnsured(t)
		e.deploy("v1")
		owner := &testDaemon{t: t, dir: e.dir, config: e.config, sock: filepath.Join(e.dir, "rb.sock")}
		cand := owner.candidate("v2")
		cand.start()
		t.Cleanup(cand.cleanup)
		// The pid file names the retired owner: it removes the file as it
		// goes, and the candidate, which never knew the file, runs on.
		e.waitExit()
		gone(t, e.pidFile)
		if s := cand.status(); s["activeReleaseId"] != "v2" {
			t.Fatalf("candidate status: %v", s)
		}
		cand.shutdown()
	})
}
