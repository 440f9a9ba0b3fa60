package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// On a terminal (stdin, stdout and stderr) and without --json, a stop of
// the active release asks first; declining sends nothing. --yes, --json,
// a release that is not active, or any of the three not a terminal never
// ask; a question nobody answers is declined after the timeout.
func TestStopAsksBeforeStoppingTheActiveRelease(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	for _, id := range []string{"v1", "v2"} {
		if r := d.deploy(id); r.code != 0 {
			t.Fatalf("deploy %s: %+v", id, r)
		}
	}
	ctl, term, seen := recordPTY(t)
	var env []string
	// stop runs rollbridge stop with the given stdin, stdout (nil: the
	// terminal) and stderr, and answer typed at the terminal once the
	// question shows. A stop that hangs (a question nobody answers) is a
	// failure, not a hung test.
	stop := func(stdin *os.File, stdout, stderr io.Writer, answer string, args ...string) (string, int) {
		t.Helper()
		mark := len(seen.String())
		cmd := exec.Command(binary, append([]string{"stop", "-c", d.config}, args...)...)
		cmd.Dir = d.dir
		cmd.Env = append(os.Environ(), env...)
		var out strings.Builder
		if stdout == nil {
			stdout = term
		} else {
			stdout = io.MultiWriter(stdout, &out)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		ended := false
		// A run that fails before it ends (no question showed) is killed
		// while it is still ours to kill.
		t.Cleanup(func() {
			if !ended {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		})
		if answer != "" {
			waitUntil(t, "the question", 15*time.Second, func() bool { return strings.Contains(seen.String()[mark:], "[y/N] ") })
			io.WriteString(ctl, answer)
		}
		var err error
		select {
		case err = <-exited:
			ended = true
		case <-time.After(20 * time.Second):
			t.Fatalf("stop %v did not end; the terminal shows %q", args, seen.String()[mark:])
		}
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), code
	}
	serving := func(want string) {
		t.Helper()
		if code, body := d.get("/release"); code != 200 || body != want {
			t.Fatalf("the site answered %d %q, want %s serving", code, body, want)
		}
	}
	asked := func(mark int) bool { return strings.Contains(seen.String()[mark:], "[y/N]") }
	question := "Release v2 is the active release: stopping it takes the site offline, and the proxy answers every request with 503 until the next deploy or rollback.\r\nStop release v2? [y/N] "
	declined := "Not stopped: nothing was sent to the daemon, release v2 keeps serving. Pass --yes to stop without this question.\r\n"

	// v1 drains in the background once the deploy of v2 answered: its
	// events (its web process's exit, "release drained", the last) would
	// count below as events of a stop that sent nothing.
	waitUntil(t, "v1 to finish draining", 20*time.Second, func() bool { return sawEvent(d, "release drained", map[string]string{"releaseId": "v1"}) })

	// 1. Declined: nothing sent, exit 1, v2 still serves.
	events := len(d.events())
	if _, code := stop(term, nil, term, "n\n"); code != 1 {
		t.Fatalf("declined stop: exit %d", code)
	}
	waitUntil(t, "the refusal", 10*time.Second, func() bool { return strings.Contains(seen.String(), declined) })
	if !strings.Contains(seen.String(), question) {
		t.Errorf("the terminal showed %q, want the question %q", seen.String(), question)
	}
	serving("v2")
	if n := len(d.events()); n != events {
		t.Errorf("the daemon recorded %d events after a declined stop", n-events)
	}
	// The same with --release-id naming the active release, and end of input.
	if _, code := stop(term, nil, term, "\x04", "--release-id", "v2"); code != 1 {
		t.Fatalf("stop --release-id v2, end of input: exit %d", code)
	}
	serving("v2")

	// 2. Nobody answers: declined after the timeout, saying so, nothing sent.
	env = []string{"_ROLLBRIDGE_TEST_STOP_CONFIRM_TIMEOUT=300ms"}
	mark := len(seen.String())
	started := time.Now()
	if _, code := stop(term, nil, term, ""); code != 1 {
		t.Fatalf("unanswered stop: exit %d", code)
	}
	took := time.Since(started)
	timedOut := "Stop release v2? [y/N] \r\nNo answer within 0.3 s.\r\n" + declined
	waitUntil(t, "the refusal after the timeout", 10*time.Second, func() bool { return strings.Contains(seen.String()[mark:], timedOut) })
	t.Logf("an unanswered question was declined after %v (timeout 300ms)", took)
	serving("v2")
	if n := len(d.events()); n != events {
		t.Errorf("the daemon recorded %d events after an unanswered stop", n-events)
	}
	env = nil

	// 3. A release that is not active: no question.
	mark = len(seen.String())
	if _, code := stop(term, nil, term, "", "--release-id", "v1"); code != 0 || asked(mark) {
		t.Fatalf("stop of the old release: exit %d, terminal %q", code, seen.String()[mark:])
	}
	serving("v2")

	// 4. Stdin is not a terminal (a script with a terminal for errors):
	// no question, the stop happens.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer pr.Close()
	d.deploy("v3")
	mark = len(seen.String())
	if _, code := stop(pr, nil, term, ""); code != 0 || asked(mark) {
		t.Fatalf("stop with piped stdin: exit %d, terminal %q", code, seen.String()[mark:])
	}
	if code, _ := d.get("/release"); code != 503 {
		t.Errorf("after the stop with piped stdin the site answered %d, want 503", code)
	}

	// 5. Stderr is not a terminal: no question either.
	d.deploy("v4")
	var errOut strings.Builder
	if _, code := stop(term, nil, &errOut, ""); code != 0 || errOut.String() != "" {
		t.Fatalf("stop with piped stderr: exit %d, stderr %q", code, errOut.String())
	}

	// 6. Stdout is not a terminal (output read by a program, as in
	// ids=$(rollbridge stop …)): no question.
	d.deploy("v5")
	mark = len(seen.String())
	if out, code := stop(term, &strings.Builder{}, term, ""); code != 0 || asked(mark) || !strings.Contains(out, `"activeReleaseId": null`) {
		t.Fatalf("stop with piped stdout: exit %d\n%s\nterminal %q", code, out, seen.String()[mark:])
	}

	// 7. --json, all three terminals: no question.
	d.deploy("v6")
	mark = len(seen.String())
	if _, code := stop(term, nil, term, "", "--json"); code != 0 || asked(mark) {
		t.Fatalf("stop --json: exit %d, terminal %q", code, seen.String()[mark:])
	}
	if code, _ := d.get("/release"); code != 503 {
		t.Errorf("after stop --json the site answered %d, want 503", code)
	}

	// 8. --yes: no question.
	d.deploy("v7")
	mark = len(seen.String())
	if _, code := stop(term, nil, term, "", "--yes"); code != 0 || asked(mark) {
		t.Fatalf("stop --yes: exit %d, terminal %q", code, seen.String()[mark:])
	}

	// 9. Accepted with y: stopped, the site answers 503.
	d.deploy("v8")
	if _, code := stop(term, nil, term, "y\n", "-y=false"); code != 0 {
		t.Fatalf("accepted stop: exit %d", code)
	}
	if code, _ := d.get("/release"); code != 503 {
		t.Errorf("after the accepted stop the site answered %d, want 503", code)
	}
}

// A stop that would ask but cannot read the daemon's status (it answers
// status with an error) refuses and sends nothing: it cannot tell what it
// would take offline. With --yes it sends the stop.
func TestStopRefusesWhenTheStatusCannotBeRead(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "rb.sock")
	requests := &syncBuffer{}
	fakeControl(t, sock, func(line string) (string, bool) {
		requests.Write([]byte(line))
		if strings.Contains(line, `"status"`) {
			return `{"error":"status is broken","status":"error"}`, true
		}
		return `{"status":"success","activeReleaseId":null}`, true
	})
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		wantStop bool
		stderr   string
	}{
		{"asks", nil, 1, false, "Error: could not read the daemon's status to confirm (status is broken); nothing was sent to the daemon; pass --yes to stop anyway\r\n"},
		{"--yes", []string{"--yes"}, 0, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, term, seen := recordPTY(t)
			before := len(requests.String())
			cmd := exec.Command(binary, append([]string{"stop", "--socket", sock}, tc.args...)...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = term, term, term
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			sent := strings.Contains(requests.String()[before:], `"command":"stop"`)
			if code != tc.code || sent != tc.wantStop {
				t.Fatalf("exit %d, stop sent %v; want exit %d, sent %v (requests %q, terminal %q)", code, sent, tc.code, tc.wantStop, requests.String()[before:], seen.String())
			}
			if tc.stderr != "" {
				waitUntil(t, "the refusal", 10*time.Second, func() bool { return strings.Contains(seen.String(), tc.stderr) })
			}
		})
	}
}

// A confirmed stop stops the release the person agreed to stop: when a
// deploy queued before it activates another release, that release keeps
// serving (a plain stop would have taken it down).
func TestConfirmedStopStopsTheConfirmedRelease(t *testing.T) {
	d := startDaemon(t, `processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: 20000, to: 20999}, health: {startDelayMs: 3000, intervalMs: 20}}]`)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	rel := filepath.Join(d.dir, "releases", "v2")
	os.MkdirAll(rel, 0o755)
	deployed := make(chan result, 1)
	go func() {
		deployed <- rollbridge(t, d.dir, "deploy", "-c", d.config, "--release-path", rel, "--release-id", "v2")
	}()
	// The release shows in status only once it is switched to; its
	// events show it starting.
	waitUntil(t, "deploy v2 to start its web process", 10*time.Second, func() bool {
		for _, e := range d.events() {
			if data, _ := e["data"].(map[string]any); e["message"] == "process started" && data["releaseId"] == "v2" {
				return true
			}
		}
		return false
	})
	ctl, term, seen := recordPTY(t)
	cmd := exec.Command(binary, "stop", "-c", d.config)
	cmd.Dir = d.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term, term, term
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the question", 10*time.Second, func() bool { return strings.Contains(seen.String(), "Stop release v1? [y/N] ") })
	io.WriteString(ctl, "y\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stop: %v\n%s", err, seen.String())
	}
	if r := <-deployed; r.code != 0 {
		t.Fatalf("deploy v2: %+v", r)
	}
	if code, body := d.get("/release"); code != 200 || body != "v2" {
		t.Errorf("after the confirmed stop of v1 the site answered %d %q, want v2 serving", code, body)
	}
	if s := d.status(); release(s, "v1")["state"] != "stopped" {
		t.Errorf("v1 is %v, want stopped", release(s, "v1")["state"])
	}
}
