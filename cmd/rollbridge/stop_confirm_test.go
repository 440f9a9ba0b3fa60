package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// On a terminal, a stop of the active release asks first; declining sends
// nothing. --yes, a release that is not active, or stdin that is not a
// terminal never ask.
func TestStopAsksBeforeStoppingTheActiveRelease(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	for _, id := range []string{"v1", "v2"} {
		if r := d.deploy(id); r.code != 0 {
			t.Fatalf("deploy %s: %+v", id, r)
		}
	}
	ctl, term := openPTY(t)
	seen := &syncBuffer{}
	go io.Copy(seen, ctl)
	// stop runs rollbridge stop with stdin and stderr as given, and
	// answer typed at the terminal once the question shows.
	stop := func(stdin *os.File, stderr io.Writer, answer string, args ...string) (string, int) {
		t.Helper()
		mark := len(seen.String())
		cmd := exec.Command(binary, append([]string{"stop", "-c", d.config}, args...)...)
		cmd.Dir = d.dir
		var stdout strings.Builder
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if answer != "" {
			waitUntil(t, "the question", 15*time.Second, func() bool { return strings.Contains(seen.String()[mark:], "[y/N] ") })
			io.WriteString(ctl, answer)
		}
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), code
	}
	serving := func(want string) {
		t.Helper()
		if code, body := d.get("/release"); code != 200 || body != want {
			t.Fatalf("the site answered %d %q, want %s serving", code, body, want)
		}
	}
	question := "Release v2 is the active release: stopping it takes the site offline, and the proxy answers every request with 503 until the next deploy or rollback.\r\nStop release v2? [y/N] "

	// 1. Declined: nothing sent, exit 1, v2 still serves.
	events := len(d.events())
	out, code := stop(term, term, "n\n")
	if code != 1 || out != "" {
		t.Fatalf("declined stop: exit %d, stdout %q", code, out)
	}
	declined := "Not stopped: nothing was sent to the daemon, release v2 keeps serving. Pass --yes to stop without this question.\r\n"
	waitUntil(t, "the refusal", 10*time.Second, func() bool { return strings.Contains(seen.String(), declined) })
	if !strings.Contains(seen.String(), question) {
		t.Errorf("the terminal showed %q, want the question %q", seen.String(), question)
	}
	serving("v2")
	if n := len(d.events()); n != events {
		t.Errorf("the daemon recorded %d events after a declined stop", n-events)
	}
	// The same with --release-id naming the active release, and end of input.
	if _, code := stop(term, term, "\x04", "--release-id", "v2"); code != 1 {
		t.Fatalf("stop --release-id v2, end of input: exit %d", code)
	}
	serving("v2")

	// 2. A release that is not active: no question.
	mark := len(seen.String())
	if out, code := stop(term, term, "", "--release-id", "v1"); code != 0 || !strings.Contains(out, `"activeReleaseId": "v2"`) {
		t.Fatalf("stop of the old release: exit %d\n%s", code, out)
	}
	if strings.Contains(seen.String()[mark:], "[y/N]") {
		t.Errorf("stopping a release that is not active asked: %q", seen.String()[mark:])
	}

	// 3. Stdin is not a terminal (a script with a terminal for errors):
	// no question, the stop happens.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer pr.Close()
	d.deploy("v3")
	mark = len(seen.String())
	if out, code := stop(pr, term, ""); code != 0 || !strings.Contains(out, `"activeReleaseId": null`) {
		t.Fatalf("stop with piped stdin: exit %d\n%s", code, out)
	}
	if strings.Contains(seen.String()[mark:], "[y/N]") {
		t.Errorf("a stop with piped stdin asked: %q", seen.String()[mark:])
	}

	// 4. Stderr is not a terminal: no question either.
	d.deploy("v4")
	var errOut strings.Builder
	if out, code := stop(term, &errOut, ""); code != 0 || !strings.Contains(out, `"activeReleaseId": null`) || errOut.String() != "" {
		t.Fatalf("stop with piped stderr: exit %d\n%s\n%s", code, out, errOut.String())
	}

	// 5. --yes: no question.
	d.deploy("v5")
	mark = len(seen.String())
	if out, code := stop(term, term, "", "--yes"); code != 0 || !strings.Contains(out, `"activeReleaseId": null`) {
		t.Fatalf("stop --yes: exit %d\n%s", code, out)
	}
	if strings.Contains(seen.String()[mark:], "[y/N]") {
		t.Errorf("stop --yes asked: %q", seen.String()[mark:])
	}

	// 6. Accepted with y: stopped, the site answers 503.
	d.deploy("v6")
	if out, code := stop(term, term, "y\n", "-y=false"); code != 0 || !strings.Contains(out, `"activeReleaseId": null`) {
		t.Fatalf("accepted stop: exit %d\n%s", code, out)
	}
	if code, _ := d.get("/release"); code != 503 {
		t.Errorf("after the accepted stop the site answered %d, want 503", code)
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
	ctl, term := openPTY(t)
	seen := &syncBuffer{}
	go io.Copy(seen, ctl)
	cmd := exec.Command(binary, "stop", "-c", d.config)
	cmd.Dir = d.dir
	var stdout strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term, &stdout, term
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
	if !strings.Contains(stdout.String(), `"activeReleaseId": "v2"`) {
		t.Errorf("the stop's reply: %s", stdout.String())
	}
	if code, body := d.get("/release"); code != 200 || body != "v2" {
		t.Errorf("after the confirmed stop of v1 the site answered %d %q, want v2 serving", code, body)
	}
	if s := d.status(); release(s, "v1")["state"] != "stopped" {
		t.Errorf("v1 is %v, want stopped", release(s, "v1")["state"])
	}
}
