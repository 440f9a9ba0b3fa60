package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const tickerProcess = `{id: "ticker", command: "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done"}`

// startCLI runs a long-lived rollbridge command (a follow) against d.
func (d *testDaemon) startCLI(args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	d.t.Helper()
	args = append(args[:1:1], append([]string{"-c", d.config}, args[1:]...)...)
	cmd := exec.Command(binary, args...)
	cmd.Dir = d.dir
	out, errOut := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, out, errOut
}

func interruptAndWait(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(10 * time.Second):
		t.Fatal("the follow did not end on SIGINT")
	}
	return -1
}

// logs --follow and events --follow print what happens after they started,
// across a deploy, each line once.
func TestFollowAcrossADeploy(t *testing.T) {
	d := startDaemon(t, `processes: [`+tickerProcess+`, `+webProcess+`]`)
	d.deploy("v1")
	logs, logsOut, _ := d.startCLI("logs", "--follow", "--process", "ticker")
	events, eventsOut, _ := d.startCLI("events", "--follow", "--json", "--limit", "1")
	waitUntil(t, "live v1 output", 10*time.Second, func() bool { return strings.Contains(logsOut.String(), "== ticker [release v1] ==") })
	// The events follower has attached once its replay (one event) is out.
	waitUntil(t, "the replayed event", 10*time.Second, func() bool { return strings.Contains(eventsOut.String(), "\n") })
	d.deploy("v2")
	waitUntil(t, "live v2 output", 10*time.Second, func() bool {
		return regexp.MustCompile(`(?s)== ticker \[release v2\] ==\n  \S+ \[stdout\] tick 1\n.*tick 3\n`).MatchString(logsOut.String())
	})
	waitUntil(t, "the switch event", 10*time.Second, func() bool {
		return strings.Contains(eventsOut.String(), `"message":"traffic switched"`) && strings.Contains(eventsOut.String(), `"releaseId":"v2"`)
	})
	if code := interruptAndWait(t, logs); code != 0 {
		t.Fatalf("logs --follow exit %d", code)
	}
	if code := interruptAndWait(t, events); code != 0 {
		t.Fatalf("events --follow exit %d", code)
	}
	// Each release's ticks appear once, in order.
	last := map[string]int{}
	release := ""
	for _, line := range strings.Split(logsOut.String(), "\n") {
		if m := regexp.MustCompile(`^== ticker \[release (\S+)\] ==$`).FindStringSubmatch(line); m != nil {
			release = m[1]
			continue
		}
		if m := regexp.MustCompile(`tick (\d+)$`).FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			if n <= last[release] {
				t.Fatalf("release %s: tick %d after tick %d (lost or repeated):\n%s", release, n, last[release], logsOut.String())
			}
			last[release] = n
		}
	}
	// JSON mode: one compact event per line, the replay limited to 1.
	lines := strings.Split(strings.TrimSpace(eventsOut.String()), "\n")
	var first struct{ At, Message string }
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || !strings.HasPrefix(lines[0], `{"at":`) || !strings.Contains(lines[1], `"message":"deploy starting"`) {
		t.Fatalf("events --follow --json:\n%s", eventsOut.String())
	}
}

// A follower that stops reading loses only its own entries: the proxy,
// status and deploys go on, and it is told how many it missed.
func TestStalledFollowerDoesNotSlowTheDaemon(t *testing.T) {
	d := startDaemon(t, `processes: [{id: "chatty", command: "exec FIXTURE -lines 200000 -line-bytes 200"}, `+webProcess+`]`)
	c, err := net.Dial("unix", d.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, `{"command":"follow","streams":["logs","events"]}`+"\n")
	r := bufio.NewReader(c)
	if line, _ := r.ReadString('\n'); line != `{"status":"success","following":["logs","events"]}`+"\n" {
		t.Fatalf("reply %q", line)
	}
	// The follower now reads nothing while a process writes 40 MB.
	d.deploy("v1")
	waitUntil(t, "the chatty process to finish writing", 30*time.Second, func() bool {
		p := processEntry(release(d.status(), "v1")["processes"], "chatty")
		logs := p["logs"].([]any)
		return len(logs) > 0 && strings.HasPrefix(logs[len(logs)-1].(map[string]any)["line"].(string), "199999 ")
	})
	for i := 0; i < 20; i++ {
		if code, body := d.get("/release"); code != 200 || body != "v1" {
			t.Fatalf("proxy: %d %q", code, body)
		}
	}
	if r := d.deploy("v2"); r.code != 0 {
		t.Fatalf("deploy next to a stalled follower: %+v", r)
	}
	// Reading again: the stream goes on and reports what was dropped.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var dropped int64
	for dropped == 0 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		var e struct {
			Type  string
			Count int64
		}
		json.Unmarshal([]byte(line), &e)
		if e.Type == "dropped" {
			dropped = e.Count
		}
	}
	t.Logf("%d entries dropped for the stalled follower", dropped)
}

func TestFollowErrors(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	for _, req := range []string{`{"command":"follow"}`, `{"command":"follow","streams":[]}`, `{"command":"follow","streams":"logs"}`, `{"command":"follow","streams":["logs","stdout"]}`} {
		c, err := net.Dial("unix", d.sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req+"\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if line != `{"error":"streams must be a non-empty array of \"logs\" and/or \"events\"","status":"error"}`+"\n" {
			t.Fatalf("%s: %q", req, line)
		}
	}
	// A daemon without follow (the Node.js rollbridge answers this way).
	dir := t.TempDir()
	sock := filepath.Join(dir, "old.sock")
	fakeControl(t, sock, func(string) (string, bool) {
		return `{"error":"Unknown command: follow","status":"error"}`, true
	})
	config := filepath.Join(dir, "rollbridge.js")
	writeFile(t, config, fmt.Sprintf(`export default {control: {path: %q}, proxy: {port: 0}, processes: [{id: "web", policy: "proxied", command: "x", port: {from: 31000, to: 31010}}]};`, sock))
	for _, args := range [][]string{{"logs", "--follow"}, {"events", "--follow"}} {
		r := rollbridge(t, dir, append(args, "-c", config)...)
		if r.code != 1 || r.stderr != "Error: this rollbridge daemon does not support --follow\n" {
			t.Fatalf("%v: %+v", args, r)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
