package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// getWithin is d.get with a deadline: a request the proxy holds for good
// fails the test instead of hanging it.
func (d *testDaemon) getWithin(path string, timeout time.Duration) (int, string) {
	d.t.Helper()
	resp, err := (&http.Client{Timeout: timeout}).Get(d.url(path))
	if err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// When nothing the state file records still runs (the machine rebooted,
// or everything died with the daemon), there is nothing to re-adopt and
// nothing to wait for: the proxy must not keep holding requests for a
// re-adoption that never happens, neither before nor after the next
// deploy.
func TestNothingLeftToReadoptHoldsNoRequests(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	d := startDaemon(t, readoptConfig(state))
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	before := pidsOf(d.status())
	d.crashDaemon()
	for _, pid := range before {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	waitUntil(t, "the previous daemon's processes to die", 10*time.Second, func() bool {
		for _, pid := range before {
			if alive(pid) {
				return false
			}
		}
		return true
	})
	d.start()
	if code, _ := d.getWithin("/release", 5*time.Second); code != 503 {
		t.Fatalf("with no release the proxy answered %d", code)
	}
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy v2: %+v", r)
	}
	if code, body := d.getWithin("/release", 5*time.Second); code != 200 || !strings.Contains(body, "v2") {
		t.Fatalf("after the deploy the proxy answered %d %q", code, body)
	}
}
