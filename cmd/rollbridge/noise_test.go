package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// proxyErrorLines returns the daemon's proxy error events, how many
// failed requests they stand for (a summary line counts its "more") and
// how many kinds of error they name.
func proxyErrorLines(stdout string) (lines, failures, kinds int) {
	seen := map[string]bool{}
	for _, line := range strings.Split(stdout, "\n") {
		var e struct {
			Message string
			Data    struct {
				Error string
				More  int
			}
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Message != "proxy error" {
			continue
		}
		lines++
		if !seen[e.Data.Error] {
			seen[e.Data.Error] = true
			kinds++
		}
		if e.Data.More > 0 {
			failures += e.Data.More
		} else {
			failures++
		}
	}
	return lines, failures, kinds
}

// While the web process is down, every request fails the same way: the
// log gets the first failure and then one summary per second, and the
// summaries account for every failed request.
func TestProxyErrorsAreSummarised(t *testing.T) {
	d := startDaemon(t, `processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: 20000, to: 20999}, restartDelayMs: 2500, health: {intervalMs: 20}}]`)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	web := processEntry(release(d.status(), "v1")["processes"], "web")
	syscall.Kill(-int(web["pid"].(float64)), syscall.SIGKILL)

	// Hammer the proxy until the web process is back.
	var bad, good atomic.Int64
	var lastBad atomic.Pointer[time.Time]
	outageBegan := time.Now()
	var other sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(d.url("/ping"))
				if err != nil {
					other.Store(err.Error(), true)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 502:
					bad.Add(1)
					now := time.Now()
					lastBad.Store(&now)
				case 200:
					if bad.Load() > 0 {
						good.Add(1)
					}
				default:
					other.Store(resp.Status, true)
				}
			}
		}()
	}
	waitUntil(t, "the web process to fail and come back", 20*time.Second, func() bool { return good.Load() > 10 })
	close(stop)
	wg.Wait()
	other.Range(func(k, _ any) bool { t.Errorf("unexpected outcome: %v", k); return true })
	failed := int(bad.Load())
	var lines, logged, kinds int
	waitUntil(t, "the summaries to cover every failed request", 5*time.Second, func() bool {
		lines, logged, kinds = proxyErrorLines(d.stdout.String())
		return logged >= failed
	})
	outage := lastBad.Load().Sub(outageBegan)
	t.Logf("%d failed requests in %v: %d proxy error lines naming %d kinds of error", failed, outage.Round(time.Millisecond), lines, kinds)
	if logged != failed {
		t.Fatalf("the proxy error events stand for %d failures, the clients saw %d", logged, failed)
	}
	// Per kind: the first failure, then at most one line per second.
	if most := kinds * (2 + int(outage/time.Second)); failed < 100 || lines > most {
		t.Fatalf("%d failed requests in %v gave %d proxy error lines (at most %d expected)", failed, outage, lines, most)
	}
}

// A secret that reaches a command through {{env.NAME}} is shown as
// {{env.NAME}} in status, events and the daemon log; the process gets
// the real value.
func TestSecretsInCommandsAreNotShown(t *testing.T) {
	const secret = "s3cr3t-7f2a91"
	d := newTestDaemon(t, `processes: [
    {id: "worker", command: "test \"{{env.API_TOKEN}}\" = \"$EXPECTED\" && exec sleep 600", cwd: "{{env.WORK_DIR}}"},
    {id: "web", policy: "proxied", command: "test \"{{env.API_TOKEN}}\" = \"$EXPECTED\" && test -e {{releasePath}}/ok && exec FIXTURE -listen", port: {from: 23000, to: 23999}, health: {intervalMs: 20, timeoutMs: 1500}}
  ]`)
	// The shell compares with $EXPECTED (not a template): the commands
	// run only if they got the real value.
	d.env = []string{"API_TOKEN=" + secret, "EXPECTED=" + secret, "WORK_DIR=" + d.dir}
	d.start()
	t.Cleanup(d.cleanup)
	// The first release fails (no ok file): its start-up diagnostics name
	// the commands too.
	os.MkdirAll(filepath.Join(d.dir, "releases", "v1"), 0o755)
	if r := d.deploy("v1"); r.code == 0 {
		t.Fatalf("v1 has no ok file but deployed: %+v", r)
	}
	os.MkdirAll(filepath.Join(d.dir, "releases", "v2"), 0o755)
	os.WriteFile(filepath.Join(d.dir, "releases", "v2", "ok"), nil, 0o644)
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy: %+v", r) // the commands got the real value
	}
	status := d.cli("status").stdout
	events := d.cli("events").stdout
	for what, text := range map[string]string{"status": status, "events": events, "the daemon log": d.stdout.String(), "its stderr": d.stderr.String()} {
		if strings.Contains(text, secret) {
			t.Errorf("%s shows the secret:\n%s", what, text)
		}
	}
	web := processEntry(release(d.status(), "v2")["processes"], "web")
	if !strings.HasPrefix(web["command"].(string), `test "{{env.API_TOKEN}}" = "$EXPECTED" && test -e `) {
		t.Errorf("web's command in status: %q", web["command"])
	}
	worker := processEntry(release(d.status(), "v2")["processes"], "worker")
	if worker["cwd"] != "{{env.WORK_DIR}}" {
		t.Errorf("worker's cwd in status: %q", worker["cwd"])
	}
	if !strings.Contains(events, `release startup process status`) || !strings.Contains(events, `{{env.API_TOKEN}}`) {
		t.Errorf("the failed deploy's diagnostics are missing:\n%s", events)
	}
}
