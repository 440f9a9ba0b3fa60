package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Another local user who binds a release's web port before its web
// process does answers the health check; before the fix the deploy
// switched the site's traffic to that user's server. Now the answer must
// come from a socket of the web process's own user, or the deploy fails
// and nothing is switched.
func TestSquattedWebPortIsRefused(t *testing.T) {
	requireRoot(t)
	port := freePort(t)
	// The web process binds only once the squatter listens: the squatter
	// gets in first however slow the machine is.
	gate := filepath.Join(t.TempDir(), "squatter-listens")
	d := startDaemon(t, `processes: [{id: "web", policy: "proxied", command: "until [ -e `+gate+` ]; do sleep 0.05; done; exec FIXTURE -listen", port: {from: `+strconv.Itoa(port)+`, to: `+strconv.Itoa(port)+`}, health: {intervalMs: 20, timeoutMs: 10000}}]`)
	rel := filepath.Join(d.dir, "releases", "v1")
	os.MkdirAll(rel, 0o755)
	deploy := exec.Command(binary, "deploy", "-c", d.config, "--release-path", rel, "--release-id", "v1")
	deploy.Dir = d.dir
	out := &syncBuffer{}
	deploy.Stdout, deploy.Stderr = out, out
	if err := deploy.Start(); err != nil {
		t.Fatal(err)
	}
	deployed := make(chan error, 1)
	go func() { deployed <- deploy.Wait() }()
	waitUntil(t, "the web process to start", 10*time.Second, func() bool {
		return strings.Contains(d.stdout.String(), `"processId":"web","releaseId":"v1","command":"until [ -e `)
	})

	exe := filepath.Join(sharedDir(t), "squatter")
	copyExecutable(t, fixture, exe)
	squatter := exec.Command(exe, "-listen")
	squatter.Env = []string{"ROLLBRIDGE_PORT=" + strconv.Itoa(port), "ROLLBRIDGE_RELEASE_ID=squatter"}
	squatter.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if err := squatter.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-squatter.Process.Pid, syscall.SIGKILL); squatter.Wait() })
	waitUntil(t, "the squatter to listen", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	select {
	case err := <-deployed:
		if err == nil {
			code, body := d.get("/release")
			t.Fatalf("the deploy succeeded and the proxy answers %d %q\n%s", code, body, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the deploy did not end")
	}
	want := "Health check failed for http://127.0.0.1:" + strconv.Itoa(port) + "/ping: the answer did not come from web: port " + strconv.Itoa(port) +
		" is listened on by a socket of uid 65534, while the process runs as uid 0; another local user may have taken the port first"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("deploy output:\n%s\nwant %q", out.String(), want)
	}
	resp, err := http.Get(d.url("/release"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || strings.Contains(string(body), "squatter") {
		t.Fatalf("after the refused deploy the proxy answers %d %q", resp.StatusCode, body)
	}
}
