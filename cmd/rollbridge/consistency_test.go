package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A relative --release-path means the caller's directory for deploy and
// doctor alike, not the daemon's.
func TestRelativeReleasePathIsTheCallers(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	caller := t.TempDir()
	for _, id := range []string{"v1", "v2"} {
		if err := os.MkdirAll(filepath.Join(caller, "releases", id), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The daemon runs in d.dir, where releases/v1 does not exist.
	r := rollbridge(t, caller, "deploy", "-c", d.config, "--release-path", "releases/v1", "--release-id", "v1")
	if r.code != 0 {
		t.Fatalf("deploy with a relative path: %+v", r)
	}
	want := filepath.Join(caller, "releases", "v1")
	if got := release(d.status(), "v1")["releasePath"]; got != want {
		t.Fatalf("releasePath %v, want %s", got, want)
	}
	if _, body := d.get("/release"); body != "v1" {
		t.Fatalf("serving %q", body)
	}
	r = rollbridge(t, caller, "doctor", "-c", d.config, "--release-path", "releases/v2")
	if r.code != 0 || !strings.Contains(r.stdout, "✓ release path: "+filepath.Join(caller, "releases", "v2")+" exists\n") ||
		!strings.Contains(r.stdout, "✓ process working directories: all 1 process working directory exists\n") {
		t.Fatalf("doctor with a relative path: %+v", r)
	}
	r = rollbridge(t, caller, "deploy", "-c", d.config, "--release-path", "releases/v2", "--release-id", "v2")
	if r.code != 0 || release(d.status(), "v2")["releasePath"] != filepath.Join(caller, "releases", "v2") {
		t.Fatalf("deploy of what doctor checked: %+v", r)
	}
}

// A config change that needs a daemon restart: doctor reports it before
// the deploy, and the deploy's refusal keeps its first line and names the
// process and the field.
func TestReloadRefusalNamesTheChange(t *testing.T) {
	const worker = `{id: "worker", command: "exec FIXTURE", replicas: REPLICAS}`
	body := func(replicas int) string {
		return `processes: [` + webProcess + `, ` + strings.Replace(worker, "REPLICAS", strconv.Itoa(replicas), 1) + `]`
	}
	d := startDaemon(t, body(2))
	d.deploy("v1")
	r := d.cli("doctor")
	if r.code != 0 || strings.Contains(r.stdout, "config reload") || !strings.HasSuffix(r.stdout, "\nAll checks passed.\n") {
		t.Fatalf("doctor with an unchanged config: %+v", r)
	}

	d.writeConfig(body(3))
	const refusal = "Config changes to processes cannot be applied live; restart the Rollbridge daemon before deploying."
	r = d.cli("doctor")
	wantLine := "✗ config reload: the running daemon would refuse " + d.config + " at the next deploy: " + refusal + "\n    processes[1] \"worker\": replicas 2 → 3\n"
	if r.code != 1 || !strings.Contains(r.stdout, wantLine) || r.stderr != "\n1 check failed.\n" {
		t.Fatalf("doctor after the change: %+v\nwant the line %q", r, wantLine)
	}
	r = d.cli("doctor", "--json")
	var report struct {
		Checks []map[string]any `json:"checks"`
		OK     bool             `json:"ok"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil || r.code != 1 || report.OK {
		t.Fatalf("doctor --json: %+v (%v)", r, err)
	}
	assertDoctorJSONShape(t, r.stdout)
	last := report.Checks[len(report.Checks)-1]
	wantCheck := map[string]any{"name": "config reload", "ok": false,
		"detail": "the running daemon would refuse " + d.config + " at the next deploy: " + refusal + "\n  processes[1] \"worker\": replicas 2 → 3"}
	if fmt.Sprint(last) != fmt.Sprint(wantCheck) {
		t.Fatalf("check %v\nwant %v", last, wantCheck)
	}

	r = d.deploy("v2")
	if want := "Error: " + refusal + "\n  processes[1] \"worker\": replicas 2 → 3\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("deploy: %+v\nwant %q", r, want)
	}
	// On the wire the refusal stays the one line scripts and the Node.js
	// CLI print; the changes come as a field of their own.
	reply := rawControl(t, d.sock, fmt.Sprintf(`{"command":"deploy","releaseId":"v3","releasePath":%q}`, d.dir))
	if want := `{"changes":["processes[1] \"worker\": replicas 2 → 3"],"error":"` + refusal + `","status":"error"}` + "\n"; reply != want {
		t.Fatalf("reply %s\nwant  %s", reply, want)
	}
	var failed []map[string]any
	for _, e := range d.events() {
		if e["message"] == "command failed" {
			failed = append(failed, e["data"].(map[string]any))
		}
	}
	wantEvent := map[string]any{"changes": []any{`processes[1] "worker": replicas 2 → 3`}, "error": refusal}
	if len(failed) != 2 || fmt.Sprint(failed[0]) != fmt.Sprint(wantEvent) || fmt.Sprint(failed[1]) != fmt.Sprint(wantEvent) {
		t.Fatalf("command failed events %v\nwant two of %v", failed, wantEvent)
	}
	if s := d.status(); s["activeReleaseId"] != "v1" {
		t.Fatalf("active %v", s["activeReleaseId"])
	}
	// doctor given another file than the daemon's: the daemon's answer is
	// about its own file, so the check says so as a warning instead of
	// judging the file doctor was given by it.
	other := filepath.Join(d.dir, "other.js")
	if err := os.WriteFile(other, []byte(appConfig(d.dir, body(2))), 0o644); err != nil {
		t.Fatal(err)
	}
	r = rollbridge(t, d.dir, "doctor", "-c", other)
	wantLine = "! config reload: the running daemon loads its config from " + d.config + ", not " + other +
		", so this check cannot judge " + other + " (the next deploy reads the daemon's file); the daemon would refuse it at the next deploy: " +
		refusal + "\n    processes[1] \"worker\": replicas 2 → 3\n"
	if r.code != 0 || !strings.Contains(r.stdout, wantLine) || !strings.HasSuffix(r.stdout, "\nAll checks passed.\n1 warning, marked ! above.\n") {
		t.Fatalf("doctor -c another file: %+v\nwant the line %q", r, wantLine)
	}
	// check-reload changed nothing: the daemon still runs two workers.
	if n := strings.Count(d.cli("logs", "--json").stdout, `"id": "worker#`); n != 2 {
		t.Fatalf("%d worker instances after the checks", n)
	}
}

// logs --process <id> shows every replica of the process, live too; an
// instance id still selects one.
func TestLogsProcessSelectsReplicas(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`, {id: "worker", command: "echo replica {{replicaIndex}}; exec FIXTURE", replicas: 3}, {id: "workers", command: "echo other; exec FIXTURE"}]`)
	d.deploy("v1")
	waitUntil(t, "the replicas' output", 10*time.Second, func() bool {
		return strings.Count(d.cli("logs", "--json").stdout, `"line": "replica `) == 3
	})
	text := d.cli("logs", "--process", "worker").stdout
	if !regexp.MustCompile(`^== worker#0 \[release v1 \(active\)\] ==\n  \S+ \[stdout\] replica 0\n\n` +
		`== worker#1 \[release v1 \(active\)\] ==\n  \S+ \[stdout\] replica 1\n\n` +
		`== worker#2 \[release v1 \(active\)\] ==\n  \S+ \[stdout\] replica 2\n$`).MatchString(text) {
		t.Fatalf("logs --process worker:\n%s", text)
	}
	var sources []struct{ ID string }
	if err := json.Unmarshal([]byte(d.cli("logs", "--process", "worker", "--json").stdout), &sources); err != nil || len(sources) != 3 {
		t.Fatalf("logs --process worker --json: %v %v", sources, err)
	}
	if text := d.cli("logs", "--process", "worker#2").stdout; !regexp.MustCompile(`^== worker#2 \[release v1 \(active\)\] ==\n  \S+ \[stdout\] replica 2\n$`).MatchString(text) {
		t.Fatalf("logs --process worker#2:\n%s", text)
	}

	follow, out, _ := d.startCLI("logs", "--follow", "--process", "worker")
	waitUntil(t, "the replayed replicas", 10*time.Second, func() bool { return strings.Count(out.String(), "] replica ") == 3 })
	d.deploy("v2") // the new release's replicas arrive live
	waitUntil(t, "the live replicas", 10*time.Second, func() bool { return strings.Count(out.String(), "] replica ") == 6 })
	if code := interruptAndWait(t, follow); code != 0 {
		t.Fatalf("logs --follow exit %d", code)
	}
	if strings.Contains(out.String(), "other") || strings.Contains(out.String(), "== web") {
		t.Fatalf("another process's output:\n%s", out.String())
	}
}

// doctor warns, without failing, when a configured port lies in the
// kernel's ephemeral port range.
func TestDoctorWarnsAboutEphemeralPorts(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatalf("doctor reads the ephemeral port range from there: %v", err)
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || hi-lo < 300 {
		t.Fatalf("ip_local_port_range %q", b)
	}
	// 100 ports inside the range that this host does not reserve.
	reserved, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_reserved_ports")
	isReserved := func(port int) bool {
		for _, part := range strings.Split(strings.TrimSpace(string(reserved)), ",") {
			a, z, isRange := strings.Cut(part, "-")
			first, err := strconv.Atoi(a)
			if err != nil {
				continue
			}
			last := first
			if isRange {
				last, _ = strconv.Atoi(z)
			}
			if port >= first && port <= last {
				return true
			}
		}
		return false
	}
	from := -1
	for start := hi - 99; start >= lo && from < 0; start -= 100 {
		free := true
		for p := start; p < start+100 && free; p++ {
			free = !isReserved(p)
		}
		if free {
			from = start
		}
	}
	if from < 0 {
		t.Fatalf("no 100 unreserved ports in %d-%d (reserved: %s)", lo, hi, reserved)
	}
	to := from + 99
	d := newTestDaemon(t, fmt.Sprintf(`processes: [{id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: %d, to: %d}}]`, from, to))
	r := d.cli("doctor")
	want := fmt.Sprintf("! ephemeral ports: web port %d-%d is in the kernel's ephemeral port range %d-%d (net.ipv4.ip_local_port_range): outgoing connections can take these ports, and a deploy then finds them busy; move the ports out of that range, or reserve them: sysctl -w net.ipv4.ip_local_reserved_ports=%d-%d (keep ports already listed there; persist it in /etc/sysctl.d/)\n", from, to, lo, hi, from, to)
	if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.HasSuffix(r.stdout, "\nAll checks passed.\n1 warning, marked ! above.\n") {
		t.Fatalf("doctor: %+v\nwant the line %q", r, want)
	}
	r = d.cli("doctor", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"name": "ephemeral ports",
      "ok": true,
      "warning": true
    }`) || !strings.HasSuffix(r.stdout, "\"ok\": true\n}\n") {
		t.Fatalf("doctor --json: %+v", r)
	}
	assertDoctorJSONShape(t, r.stdout)
	// Below the range: no warning, the report is today's.
	d.writeConfig(`processes: [` + webProcess + `]`)
	if r := d.cli("doctor"); r.code != 0 || strings.Contains(r.stdout, "ephemeral") || !strings.HasSuffix(r.stdout, "\nAll checks passed.\n") {
		t.Fatalf("doctor below the range: %+v", r)
	}
}

// freeTestPort is a free port of the tests' range 20000-20999, below the
// kernel's ephemeral range (unlike a port the kernel picks), for tests
// whose doctor output must not carry the ephemeral ports warning.
func freeTestPort(t *testing.T) int {
	t.Helper()
	start := rand.IntN(1000)
	for i := 0; i < 1000; i++ {
		port := 20000 + (start+i)%1000
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port in 20000-20999")
	return 0
}

// assertDoctorJSONShape checks doctor's JSON keeps the keys scripts read:
// {checks, ok}, each check {detail, name, ok}, and only a warning adds
// "warning": true.
func assertDoctorJSONShape(t *testing.T, out string) {
	t.Helper()
	var report map[string]any
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	if len(report) != 2 || report["ok"] == nil || report["checks"] == nil {
		t.Fatalf("doctor --json keys: %v", report)
	}
	for _, c := range report["checks"].([]any) {
		check := c.(map[string]any)
		_, hasDetail := check["detail"].(string)
		_, hasName := check["name"].(string)
		ok, hasOK := check["ok"].(bool)
		want := 3
		if w, isWarning := check["warning"]; isWarning {
			if w != true || !ok {
				t.Fatalf("a warning is a passing check with \"warning\": true: %v", check)
			}
			want = 4
		}
		if !hasDetail || !hasName || !hasOK || len(check) != want {
			t.Fatalf("check keys: %v", check)
		}
	}
}
