package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A deploy group member may pick any release id and revision, and an
// application may print anything: none of it may reach root's terminal
// as escape sequences (a new title, a cleared screen, a clipboard write
// through OSC 52). With NO_COLOR=1 our own output has no escape at all
// but the progress line's own "\r\033[K", so any other ESC is a failure:
// in the deploy's progress and summary, a failed deploy's error and
// detail, status, events and events --follow.
func TestHostileTextOnATerminal(t *testing.T) {
	from := 20000 + 40*rand.IntN(25)
	web := func(command string) string {
		return fmt.Sprintf(`processes: [{id: "worker", command: "exec FIXTURE"}, {id: "web", policy: "proxied", command: %q, port: {from: %d, to: %d}, restart: {maxRestarts: 0}, health: {intervalMs: 20, timeoutMs: 60000}}]`,
			command, from, from+39)
	}
	d := startDaemon(t, web("exec FIXTURE -listen"))
	if r := d.deploy("r1"); r.code != 0 {
		t.Fatalf("deploy r1: %+v", r)
	}
	env := []string{"TERM=xterm", "NO_COLOR=1"}
	const id, revision = "r2\x1b[2J", "abc\x1b]0;PWNED\a\x1b]52;c;cHduZWQ=\a"
	noESC := func(what, out string) {
		t.Helper()
		if strings.ContainsRune(strings.ReplaceAll(out, "\r\x1b[K", ""), '\x1b') {
			t.Errorf("%s: an escape sequence reached the terminal:\n%q", what, out)
		}
	}
	shown := func(what, out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: %s is not shown:\n%s", what, w, out)
			}
		}
	}

	// The deploy: progress on stderr, the summary on stdout.
	rel := filepath.Join(d.dir, "releases", "r2")
	os.MkdirAll(rel, 0o755)
	out, code := runOnPTY(t, env, "deploy", "-c", d.config, "--release-path", rel, "--release-id", id, "--revision", revision)
	if code != 0 {
		t.Fatalf("deploy exited %d:\n%s", code, out)
	}
	noESC("deploy", out)
	shown("deploy", out, `→ deploying "r2\x1b[2J"`, `✓ traffic switched to "r2\x1b[2J"`,
		`Deployed "r2\x1b[2J" (rev "abc\x1b]0;PWNED\a\x1b]52;c;cHduZWQ=\a"): active`)

	// A failed deploy of a release with such an id, whose web prints
	// escape sequences and exits.
	d.writeConfig(web(`printf '\033]0;pwned\007\033[2Jboom\n' >&2; exit 3`))
	bad := filepath.Join(d.dir, "releases", "r3")
	os.MkdirAll(bad, 0o755)
	out, code = runOnPTY(t, env, "deploy", "-c", d.config, "--release-path", bad, "--release-id", "r3\x1b[31m", "--revision", revision)
	if code != 1 {
		t.Fatalf("failing deploy exited %d:\n%s", code, out)
	}
	noESC("failed deploy", out)
	shown("failed deploy", out, `→ deploying "r3\x1b[31m"`, `web exited 1 time (code 3), restart limit reached; last output: "\x1b]0;pwned\a\x1b[2Jboom"`)

	out, code = d.cliOnTerminal(env, "status")
	if code != 0 {
		t.Fatalf("status exited %d:\n%s", code, out)
	}
	noESC("status", out)
	shown("status", out, `→ "r2\x1b[2J"`, `"r2\x1b[2J"  "abc\x1b]0;PWNED\a\x1b]52;c;cHduZWQ=\a"  active`,
		`deploy failed`, `processes=[web exited 1 time (code 3), restart limit reached, last output: "\x1b]0;pwned\a\x1b[2Jboom"] releaseId="r3\x1b[31m"`)
	if strings.Contains(out, `"exitCauses"`) {
		t.Errorf("status shows the failed deploy's processes as JSON:\n%s", out)
	}

	out, code = d.cliOnTerminal(env, "events")
	if code != 0 {
		t.Fatalf("events exited %d:\n%s", code, out)
	}
	noESC("events", out)
	shown("events", out, `releaseId="r2\x1b[2J"`, `revision="abc\x1b]0;PWNED\a\x1b]52;c;cHduZWQ=\a"`, `processes=[web exited 1 time (code 3)`)

	// Piped, events prints the daemon's text as the Node.js tool does:
	// compact JSON data, the processes report included, nothing escaped.
	piped := d.cli("events", "--limit", "50")
	if !strings.Contains(piped.stdout, `  deploy failed {"error":"Health check failed for `) || !strings.Contains(piped.stdout, `{"exitCauses":[{"code":3,"count":1}],"exits":1,"failing":true,"id":"web","lastOutput":[{"at":`) ||
		!strings.Contains(piped.stdout, `"releaseId":"r2\u001b[2J"`) {
		t.Errorf("piped events changed:\n%s", piped.stdout)
	}

	// events --follow replays the last events, the failed deploy among them.
	_, term, seen := recordPTY(t)
	follow := exec.Command(binary, "events", "-c", d.config, "--follow", "--limit", "50")
	follow.Env = append(os.Environ(), env...)
	follow.Stdout, follow.Stderr = term, io.Discard
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follow.Process.Kill(); follow.Wait() })
	waitUntil(t, "the failed deploy in the followed events", 10*time.Second, func() bool { return strings.Contains(seen.String(), "deploy failed") })
	if r := d.cli("restart", "--process", "worker"); r.code != 0 {
		t.Fatalf("restart: %+v", r)
	}
	waitUntil(t, "a live event", 10*time.Second, func() bool { return strings.Contains(seen.String(), "process restart requested") })
	noESC("events --follow", seen.String())
	shown("events --follow", seen.String(), `releaseId="r3\x1b[31m"`, `processes=[web exited 1 time (code 3)`)
}

// What an application logged (a request line a client chose, say) is
// shown by the terminal rule in logs and logs --follow on a terminal, and
// exactly as captured when piped.
func TestLogsOnATerminalEscapeApplicationOutput(t *testing.T) {
	d := startDaemon(t, `processes: [`+strings.ReplaceAll(webProcess, "FIXTURE", fixture)+`,
    {id: "worker", command: "printf 'GET /\\033]0;pwned\\007\\033[2J HTTP/1.1\\n'; exec `+fixture+`"}]`)
	if r := d.deploy("r1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	const raw, quoted = "GET /\x1b]0;pwned\a\x1b[2J HTTP/1.1", `"GET /\x1b]0;pwned\a\x1b[2J HTTP/1.1"`
	waitUntil(t, "the worker's line", 10*time.Second, func() bool {
		return strings.Contains(d.cli("logs", "--process", "worker").stdout, raw)
	})
	env := []string{"TERM=xterm", "NO_COLOR=1"}
	out, code := d.cliOnTerminal(env, "logs", "--process", "worker")
	if code != 0 || strings.ContainsRune(out, '\x1b') || !strings.Contains(out, "[stdout] "+quoted+"\n") {
		t.Errorf("logs on a terminal: exit %d\n%q", code, out)
	}

	_, term, seen := recordPTY(t)
	follow := exec.Command(binary, "logs", "-c", d.config, "--process", "worker", "--follow")
	follow.Env = append(os.Environ(), env...)
	follow.Stdout, follow.Stderr = term, io.Discard
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follow.Process.Kill(); follow.Wait() })
	waitUntil(t, "the replayed line", 10*time.Second, func() bool { return strings.Contains(seen.String(), quoted) })
	if strings.ContainsRune(seen.String(), '\x1b') {
		t.Errorf("logs --follow on a terminal: %q", seen.String())
	}
}
