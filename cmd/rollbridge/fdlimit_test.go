package main

import (
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A daemon that runs out of file descriptors keeps every listener: the
// proxy and the control socket stop accepting while no descriptor is
// free, and answer again within the retry interval (at most 1 s) once
// some are. Before, the control socket's accept loop ended at the first
// EMFILE and status, deploy and shutdown hung until the daemon was killed.
func TestFileDescriptorExhaustionIsSurvived(t *testing.T) {
	d := newTestDaemon(t, `processes: [`+webProcess+`]`)
	// Soft and hard limit 64: the daemon cannot raise it, and uses about 15.
	d.wrap = []string{"sh", "-c", `ulimit -n 64 && exec "$0" "$@"`}
	d.start()
	t.Cleanup(d.cleanup)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}

	// Keep-alive connections opened before the flood: requests on them
	// during it need new upstream connections, which wait for a free
	// descriptor instead of failing.
	var early []*keepAliveConn
	for i := 0; i < 3; i++ {
		c, err := dialKeepAlive("127.0.0.1:" + strconv.Itoa(d.port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if code, body, _, err := c.get("/release"); code != 200 || body != "v1" {
			t.Fatalf("before the flood: %d %q %v", code, body, err)
		}
		early = append(early, c)
	}

	// Flood the proxy with idle connections until its accept fails.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	addr := "127.0.0.1:" + strconv.Itoa(d.port)
	for len(flood) < 200 && !strings.Contains(d.stdout.String(), `"listener":"proxy"},"message":"accept failed"`) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", len(flood), err)
		}
		flood = append(flood, c)
		if len(flood) > 70 {
			waitUntil(t, "the proxy's accept failed event", 5*time.Second, func() bool {
				return strings.Contains(d.stdout.String(), `"listener":"proxy"},"message":"accept failed"`)
			})
		}
	}
	// A status asked now cannot be accepted yet: its connection waits in
	// the socket's backlog while the control listener retries.
	type answer struct {
		r  result
		at time.Time
	}
	answered := make(chan answer, 1)
	go func() {
		r := rollbridge(t, d.dir, "status", "-c", d.config)
		answered <- answer{r, time.Now()}
	}()
	waitUntil(t, "the control socket's accept failed event", 10*time.Second, func() bool {
		return strings.Contains(d.stdout.String(), `"listener":"control"},"message":"accept failed"`)
	})
	// Stay exhausted long enough for the retries to back off to their
	// 1 s cap (5 ms doubling: 1.275 s): the worst case for the relief.
	select {
	case a := <-answered:
		t.Fatalf("status answered while no descriptor was free: %+v", a.r)
	case <-time.After(1500 * time.Millisecond):
	}

	type reply struct {
		code int
		body string
	}
	replies := make(chan reply, len(early))
	for _, c := range early {
		go func() { code, body, _, _ := c.get("/slow?ms=50"); replies <- reply{code, body} }()
	}

	relief := time.Now()
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	var a answer
	select {
	case a = <-answered:
	case <-time.After(10 * time.Second):
		t.Fatalf("status did not answer 10 s after relief\nstdout: %s", d.stdout.String())
	}
	if a.r.code != 0 || !strings.Contains(a.r.stdout, `"activeReleaseId": "v1"`) {
		t.Fatalf("status after relief: %+v", a.r)
	}
	took := a.at.Sub(relief)
	t.Logf("status answered %v after relief", took.Round(time.Millisecond))
	if took > 1500*time.Millisecond {
		t.Fatalf("status answered %v after relief; the retry interval is at most 1 s", took)
	}
	for range early {
		if r := <-replies; r.code != 200 || r.body != "v1" {
			t.Errorf("a request sent during the exhaustion got %d %q", r.code, r.body)
		}
	}
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy after relief: %+v", r)
	}
	if code, body := d.get("/release"); code != 200 || body != "v2" {
		t.Fatalf("after the deploy: %d %q", code, body)
	}
	// One event when a burst of failures begins, one when it ends (a
	// second after the last failure): far fewer events than failed
	// attempts.
	var out string
	waitUntil(t, "the end of both bursts", 10*time.Second, func() bool {
		out = d.stdout.String()
		return strings.Contains(out, `"listener":"proxy"},"message":"accept recovered"`) &&
			strings.Contains(out, `"listener":"control"},"message":"accept recovered"`)
	})
	for _, listener := range []string{"proxy", "control"} {
		bursts := strings.Count(out, `"listener":"`+listener+`"},"message":"accept failed"`)
		failures := 0
		for _, m := range regexp.MustCompile(`"failures":(\d+),"listener":"`+listener+`"},"message":"accept recovered"`).FindAllStringSubmatch(out, -1) {
			n, _ := strconv.Atoi(m[1])
			failures += n
		}
		t.Logf("%s listener: %d failed attempts in %d burst(s)", listener, failures, bursts)
		if bursts == 0 || failures <= bursts {
			t.Errorf("%s listener: %d accept failed events for %d failed attempts", listener, bursts, failures)
		}
	}
}

// hardFileLimit is this process's hard RLIMIT_NOFILE as doctor prints it.
func hardFileLimit(t *testing.T) string {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(lim.Max, 10)
}

// openFilesLimit reads the soft and hard "Max open files" of pid.
func openFilesLimit(t *testing.T, pid int) (soft, hard string) {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			return f[0], f[1]
		}
	}
	t.Fatalf("no open files limit for %d:\n%s", pid, data)
	return "", ""
}

// The daemon raises its soft open-files limit (to just below the hard
// limit: the Go runtime's convention), its processes get the limit it
// was started with, and doctor reports the daemon's limits and use.
func TestOpenFilesLimit(t *testing.T) {
	// The worker is not a Go program (which would raise its own limit).
	d := newTestDaemon(t, `processes: [{id: "worker", command: "exec sleep 600"}, `+webProcess+`]`)
	d.wrap = []string{"sh", "-c", `ulimit -Sn 256 && ulimit -Hn 4096 && exec "$0" "$@"`}
	d.start()
	t.Cleanup(d.cleanup)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	daemon := d.cmd.Process.Pid
	if soft, hard := openFilesLimit(t, daemon); soft != "4095" || hard != "4096" {
		t.Fatalf("daemon limits: soft %s, hard %s", soft, hard)
	}
	worker := int(processEntry(release(d.status(), "v1")["processes"], "worker")["pid"].(float64))
	if soft, hard := openFilesLimit(t, worker); soft != "256" || hard != "4096" {
		t.Fatalf("the worker's limits: soft %s, hard %s", soft, hard)
	}
	r := d.cli("doctor")
	if want := regexp.MustCompile(`✓ open files: daemon \(pid ` + strconv.Itoa(daemon) + `\): soft limit 4095, hard limit 4096, \d+ open\n`); r.code != 0 || !want.MatchString(r.stdout) {
		t.Fatalf("doctor: %+v", r)
	}
}
