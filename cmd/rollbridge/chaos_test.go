//go:build chaos

package main

import (
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/sdnotify/sdtest"
)

// chaosDuration bounds the fault injection (CHAOS_DURATION overrides).
func chaosDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("CHAOS_DURATION")); err == nil {
		return d
	}
	return 45 * time.Second
}

// TestChaos runs traffic through the proxy while processes are killed,
// garbage is sent to the control socket, the state directory vanishes,
// broken releases are deployed, a flood of connections uses up the
// daemon's file descriptors and the daemon itself is SIGKILLed, in the
// middle of a deploy or while it serves. The daemon runs under a harness
// playing systemd (sdtest), which keeps its stored descriptors and starts
// it again with them. The daemon must survive all of it but the kills,
// the active release must keep serving (failed requests only while its
// own web process or the daemon is down; a daemon restarted with its
// stored proxy socket refuses no connection), every killed process must
// come back, a daemon killed while it serves must come back with the same
// web process, a crashed daemon must leave nothing that recover --force
// does not stop, and nothing may outlive the shutdown.
func TestChaos(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	os.Mkdir(stateDir, 0o755)
	// A fixed proxy port: the traffic goes on to a restarted daemon. The
	// web ports lie outside the 20000-20999 of the other tests: a broken
	// release's web process never binds its port, and another test's web
	// process on the same machine that takes it meanwhile would pass the
	// health check in its place.
	d := newTestDaemon(t, `statePath: `+strconv.Quote(filepath.Join(stateDir, "rollbridge.json"))+`, proxy: {port: `+strconv.Itoa(freePort(t))+`, drainTimeoutMs: 500}, processes: [
    {id: "beacon", policy: "service", command: "exec FIXTURE", restartDelayMs: 50},
    {id: "worker", command: "exec FIXTURE -grandchildren 1", replicas: 2, restartDelayMs: 50},
    {id: "cron", policy: "singleton", command: "exec FIXTURE", restartDelayMs: 50},
    {id: "web", policy: "proxied", command: "test ! -e {{releasePath}}/broken && exec FIXTURE -listen", port: {from: 24000, to: 24999}, restartDelayMs: 50, health: {intervalMs: 20, timeoutMs: 2000}}
  ]`)
	// 256 descriptors: enough for the daemon's work, few enough for a
	// flood of connections to use them all up.
	d.wrap = []string{"sh", "-c", `ulimit -n 256 && exec "$0" "$@"`}
	m, err := sdtest.NewManager(d.dir, storeMax)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	d.command = func(args []string) *exec.Cmd { return m.Command(args[0], args[1:]...) }
	d.start()
	t.Cleanup(d.cleanup)

	d.deploy("good-0")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))

	tr := startTraffic(d.url(""), mixedClients(4, "/release")...)

	// Windows in which the active web process or the daemon was down
	// (killed on purpose).
	type window struct{ from, to time.Time }
	var webDown, readopted []window
	deploys, crashes, floods := 0, 0, 0
	deadline := time.Now().Add(chaosDuration())
	for time.Now().Before(deadline) {
		s := d.status()
		active := release(s, s["activeReleaseId"].(string))
		switch rng.Intn(10) {
		case 0, 1: // a background process dies
			var pids []int
			for _, p := range active["processes"].([]any) {
				if m := p.(map[string]any); m["id"] != "web" && m["pid"] != nil {
					pids = append(pids, int(m["pid"].(float64)))
				}
			}
			for _, key := range []string{"services", "singletons"} {
				for _, e := range s[key].([]any) {
					if pid, ok := e.(map[string]any)["process"].(map[string]any)["pid"].(float64); ok {
						pids = append(pids, int(pid))
					}
				}
			}
			if len(pids) > 0 {
				syscall.Kill(-pids[rng.Intn(len(pids))], syscall.SIGKILL)
			}
		case 2: // the web process dies: requests may fail until it is back
			web := processEntry(active["processes"], "web")
			if web["pid"] == nil {
				break
			}
			from := time.Now()
			restarts := web["restarts"].(float64)
			syscall.Kill(-int(web["pid"].(float64)), syscall.SIGKILL)
			waitUntil(t, "the web process to restart", 20*time.Second, func() bool {
				s := d.status()
				w := processEntry(release(s, s["activeReleaseId"].(string))["processes"], "web")
				return w["restarts"].(float64) > restarts && w["state"] == "running"
			})
			// Back once it listens again.
			waitUntil(t, "the web process to answer", 20*time.Second, func() bool {
				code, _ := d.get("/release")
				return code == 200
			})
			webDown = append(webDown, window{from, time.Now().Add(200 * time.Millisecond)})
		case 3: // garbage on the control socket
			if c, err := net.Dial("unix", d.sock); err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				switch rng.Intn(3) {
				case 0:
					garbage := make([]byte, 1+rng.Intn(4096))
					rng.Read(garbage)
					c.Write(append(garbage, '\n'))
				case 1:
					c.Write([]byte(strings.Repeat("x", 2<<20) + "\n")) // over the 1 MiB limit
				case 2:
					c.Write([]byte(`{"command":"deploy","releasePath":`)) // cut short
				}
				c.Close()
			}
		case 4: // the state directory vanishes for a while
			os.Rename(stateDir, stateDir+".away")
			time.Sleep(time.Duration(rng.Intn(300)) * time.Millisecond)
			os.Rename(stateDir+".away", stateDir)
		case 5: // a broken release is deployed and refused
			id := fmt.Sprintf("broken-%d", deploys)
			path := filepath.Join(d.dir, "releases", id)
			os.MkdirAll(path, 0o755)
			os.WriteFile(filepath.Join(path, "broken"), nil, 0o644)
			before := s["activeReleaseId"]
			if r := d.cli("deploy", "--release-path", path, "--release-id", id); r.code != 1 {
				t.Fatalf("a broken release deployed: %+v", r)
			}
			if now := d.status()["activeReleaseId"]; now != before {
				t.Fatalf("the active release changed from %v to %v", before, now)
			}
			deploys++
		case 6: // a good deploy
			deploys++
			if r := d.deploy(fmt.Sprintf("good-%d", deploys)); r.code != 0 {
				t.Fatalf("deploy: %+v", r)
			}
		case 7: // the daemon dies at a random moment of a deploy
			deploys++
			crashes++
			from := time.Now()
			crashMidDeploy(t, d, m, fmt.Sprintf("good-%d", deploys), time.Duration(rng.Intn(400))*time.Millisecond)
			deploys++
			if r := d.deploy(fmt.Sprintf("good-%d", deploys)); r.code != 0 {
				t.Fatalf("deploy after the crash: %+v", r)
			}
			waitUntil(t, "the restarted daemon to serve", 20*time.Second, func() bool {
				code, _ := d.get("/release")
				return code == 200
			})
			webDown = append(webDown, window{from, time.Now().Add(200 * time.Millisecond)})
		case 8: // the daemon runs out of descriptors for a while: requests wait, none fails
			floods++
			flood := floodProxy(t, d)
			time.Sleep(time.Duration(200+rng.Intn(800)) * time.Millisecond) // the fault's length
			for _, c := range flood {
				c.Close()
			}
		case 9: // the daemon is SIGKILLed while it serves; its service manager starts it again with the stored descriptors
			web := processEntry(active["processes"], "web")
			if web["state"] != "running" || web["pid"] == nil {
				break
			}
			crashes++
			from := time.Now()
			d.crashDaemon()
			d.start()
			after := d.status()
			w := processEntry(release(after, after["activeReleaseId"].(string))["processes"], "web")
			ro, _ := after["readoption"].(map[string]any)
			if after["activeReleaseId"] != s["activeReleaseId"] || w["pid"] != web["pid"] || ro == nil || ro["fdStore"] != true {
				t.Fatalf("after a SIGKILL the daemon serves %v with web pid %v (readoption %v); before: %v with web pid %v",
					after["activeReleaseId"], w["pid"], after["readoption"], s["activeReleaseId"], web["pid"])
			}
			if code, body := d.get("/release"); code != 200 || body != s["activeReleaseId"] {
				t.Fatalf("after a SIGKILL the proxy answers %d %q", code, body)
			}
			readopted = append(readopted, window{from, time.Now().Add(200 * time.Millisecond)})
		}
		time.Sleep(time.Duration(50+rng.Intn(150)) * time.Millisecond)
	}
	failures := tr.stop()

	// Failures only while the web process was down on purpose, or the
	// daemon was: while a daemon restarted with its stored proxy socket,
	// connections waited in the backlog instead of being refused.
	duringReadoption := 0
	for _, f := range failures {
		allowed := false
		for _, w := range webDown {
			if !f.at.Before(w.from) && !f.at.After(w.to) {
				allowed = true
			}
		}
		for _, w := range readopted {
			if !f.at.Before(w.from) && !f.at.After(w.to) {
				if strings.Contains(f.err, "connection refused") {
					t.Errorf("a connection was refused while the daemon restarted with its stored proxy socket: %s at %s", f.err, f.at.Format(time.StampMilli))
				}
				duringReadoption++
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("a request failed outside a web outage: %s at %s", f.err, f.at.Format(time.StampMilli))
		}
	}
	// Every killed process came back.
	waitUntil(t, "every process to be running", 20*time.Second, func() bool {
		s := d.status()
		active := release(s, s["activeReleaseId"].(string))
		for _, p := range active["processes"].([]any) {
			if p.(map[string]any)["state"] != "running" {
				return false
			}
		}
		for _, key := range []string{"services", "singletons"} {
			for _, e := range s[key].([]any) {
				if e.(map[string]any)["process"].(map[string]any)["state"] != "running" {
					return false
				}
			}
		}
		return true
	})
	t.Logf("%d requests, %d failed during %d outages (%d daemon crashes, %d of them re-adopted through the harness with %d failed requests), %d deploys, %d descriptor floods",
		tr.ok.Load()+int64(len(failures)), len(failures), len(webDown)+len(readopted), crashes, len(readopted), duringReadoption, deploys, floods)
	d.shutdown()
	if left := processesMentioning(fixture); len(left) > 0 {
		t.Fatalf("processes outlived the daemon: %v", left)
	}
}

// crashMidDeploy SIGKILLs the daemon after a deploy of id has run for
// after, then checks the recovery path an operator takes: a new daemon
// re-adopts the leftovers or lists them as orphans, and once it is shut
// down (stopping what it re-adopted) recover --force stops the rest, so
// no process of the test is left running. Finally a fresh daemon is
// started for the next deploy, with an empty store: systemd empties it
// when the unit stops.
func crashMidDeploy(t *testing.T, d *testDaemon, m *sdtest.Manager, id string, after time.Duration) {
	t.Helper()
	path := filepath.Join(d.dir, "releases", id)
	os.MkdirAll(path, 0o755)
	deploy := exec.Command(binary, "deploy", "-c", d.config, "--release-path", path, "--release-id", id)
	if err := deploy.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { deploy.Wait(); close(done) }()
	time.Sleep(after) // the fault's moment, not a synchronisation
	d.crashDaemon()
	// A deploy that connected after the kill waits in the stored control
	// socket's backlog for the successor, which answers it or ends it at
	// its shutdown.
	d.start()
	d.status()
	d.stopDaemon()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		deploy.Process.Kill()
		t.Fatalf("the deploy killed %v in did not end after the successor's shutdown", after)
	}
	m.Reset()
	if r := d.cli("recover", "--force"); r.code != 0 {
		t.Fatalf("recover --force after a crash %v into a deploy: %+v", after, r)
	}
	// Children the dead daemon had not released yet end by themselves.
	waitUntil(t, "children held for the dead daemon to exit", 5*time.Second, func() bool {
		return len(gatedProcesses()) == 0
	})
	if left := processesMentioning(fixture); len(left) > 0 {
		t.Fatalf("processes outlived a crash %v into a deploy and recover --force: %v", after, left)
	}
	d.start()
}

// floodProxy opens idle connections to the proxy until its accept fails
// for lack of descriptors, and returns them for the caller to close.
func floodProxy(t *testing.T, d *testDaemon) []net.Conn {
	t.Helper()
	const event = `"listener":"proxy"},"message":"accept failed"`
	const recovered = `"listener":"proxy"},"message":"accept recovered"`
	// One burst of failures is logged once, and ends a quiet second after
	// its last failure: a flood that starts before the previous burst has
	// ended adds to it and logs nothing new. Faster operations between two
	// floods made that happen.
	waitUntil(t, "the previous descriptor burst to end", 10*time.Second, func() bool {
		out := d.stdout.String()
		return strings.Count(out, event) == strings.Count(out, recovered)
	})
	before := strings.Count(d.stdout.String(), event)
	var flood []net.Conn
	for strings.Count(d.stdout.String(), event) == before {
		if len(flood) == 600 {
			for _, c := range flood {
				c.Close()
			}
			t.Fatalf("600 idle connections did not use up the daemon's 256 descriptors")
		}
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(d.port))
		if err != nil {
			t.Fatalf("flood connection %d: %v", len(flood), err)
		}
		flood = append(flood, c)
		if len(flood) > 260 {
			// The kernel queues what the daemon cannot accept; give it
			// a moment to try.
			time.Sleep(5 * time.Millisecond)
		}
	}
	return flood
}
