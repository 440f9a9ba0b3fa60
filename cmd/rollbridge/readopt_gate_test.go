package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strconv"
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
	d, before := readoptDaemon(t)
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

// A re-adoption refused part-way (a later process of the release no
// longer renders: here an environment variable the restarted daemon
// lacks) takes over nothing: no process is re-adopted and then left to
// a supervisor nobody owns, which would restart it behind the orphan
// report's back.
func TestReadoptionRefusedPartWayAdoptsNothing(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	d := newTestDaemon(t, `statePath: `+strconv.Quote(state)+`, processes: [
    {id: "worker", command: "exec FIXTURE", restartDelayMs: 10},
    {id: "mailer", command: "exec FIXTURE -stderr {{env.RB_REVIEW_MAILER}}"},
    `+webProcess+`]`)
	d.env = []string{"RB_REVIEW_MAILER=on"}
	d.start()
	t.Cleanup(d.cleanup)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	before := pidsOf(d.status())
	d.crashDaemon()
	d.env = nil
	d.start()
	s := d.status()
	ro, _ := s["readoption"].(map[string]any)
	if refused, _ := ro["refused"].(string); !strings.Contains(refused, "RB_REVIEW_MAILER") {
		t.Fatalf("readoption %v", s["readoption"])
	}
	if sawEvent(d, "process re-adopted", nil) {
		t.Fatalf("a process was re-adopted by a refused re-adoption:\n%s", d.stdout.String())
	}
	orphans := map[int]bool{}
	for _, o := range s["orphans"].([]any) {
		orphans[int(o.(map[string]any)["pid"].(float64))] = true
	}
	for id, pid := range before {
		if !orphans[pid] {
			t.Errorf("%s (pid %d) is not an orphan: %v", id, pid, s["orphans"])
		}
	}
	d.stopDaemon()
	if r := d.cli("recover", "--force"); r.code != 0 {
		t.Fatalf("recover --force: %+v", r)
	}
}
