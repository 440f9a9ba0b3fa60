package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// A status from a daemon that leaves fields out (the Node.js daemon, an
// older one, or one half-way through a deploy) is shown with "-" for what
// is missing; it never fails or panics.
func TestStatusScreenWithMissingFields(t *testing.T) {
	now := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	cases := map[string]string{
		"empty object":       `{}`,
		"only status":        `{"status":"success"}`,
		"nulls everywhere":   `{"activeReleaseId":null,"application":null,"proxy":null,"releases":null,"services":null,"singletons":null,"orphans":null}`,
		"release, no fields": `{"activeReleaseId":"r1","releases":[{"releaseId":"r1"}]}`,
		"process, no fields": `{"activeReleaseId":"r1","releases":[{"releaseId":"r1","state":"active","processes":[{}]}],"services":[{"id":"cache"}],"singletons":[{}]}`,
		"proxy without port": `{"proxy":{"host":"127.0.0.1"},"releases":[{"releaseId":"r1","revision":null,"activatedAt":"not a time","state":"draining"}]}`,
		"orphan, no fields":  `{"orphans":[{}]}`,
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			screen, err := statusScreen([]byte(raw), daemonFacts{}, nil, nil, now, palette{})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(screen, "rollbridge  daemon") && !strings.Contains(raw, `"application"`) {
				t.Errorf("no daemon line:\n%s", screen)
			}
			if strings.Contains(screen, "<nil>") || strings.Contains(screen, "%!") {
				t.Errorf("a missing value leaked into the screen:\n%s", screen)
			}
		})
	}
	// Not JSON at all: an error that says what to do.
	if _, err := statusScreen([]byte(`nope`), daemonFacts{}, nil, nil, now, palette{}); err == nil || !strings.Contains(err.Error(), "--json") {
		t.Errorf("unreadable status: %v", err)
	}
}

// The screen of a typical app, from a fixed status and clock: every
// column in place, newest release first, the stopped release's processes
// left out, a draining release with its open connections, problems last.
func TestStatusScreenLayout(t *testing.T) {
	now := time.Date(2026, 12, 6, 8, 10, 0, 0, time.UTC)
	raw := `{"status":"success","activeReleaseId":"r3","application":"shop","control":{"path":"/run/shop.sock"},
"daemonRuntime":{"version":"0.2.0"},"orphans":[{"id":"old","pid":77,"releaseId":null}],"proxy":{"host":"127.0.0.1","port":8080},
"releases":[
 {"activatedAt":"2026-12-06T07:00:00.000Z","connectionCount":0,"releaseId":"r1","revision":"r1","state":"stopped","stoppedAt":"2026-12-06T08:00:00.000Z",
  "processes":[{"id":"web","state":"stopped","exitCode":null,"exitSignal":"SIGTERM","restarts":0}]},
 {"activatedAt":"2026-12-06T08:00:00.000Z","connectionCount":3,"drainStartedAt":"2026-12-06T08:09:30.000Z","releaseId":"r2","revision":"bbb","state":"draining","ports":{"web":18001},
  "processes":[{"id":"web","pid":200,"startedAt":"2026-12-06T08:00:00.000Z","state":"running","uptimeMs":600000,"restarts":0,"lastStartReason":"deploy"}]},
 {"activatedAt":"2026-12-06T08:09:30.000Z","connectionCount":1,"releaseId":"r3","revision":"ccc","state":"active","ports":{"web":18002},
  "processes":[{"id":"worker#0","pid":301,"state":"running","uptimeMs":30000,"restarts":2,"lastStartReason":"crash","rssBytes":52428800},
               {"id":"worker#1","state":"failed","exitCode":3,"exitSignal":null,"restarts":5,"memoryRestarts":1,"lastStartReason":"crash"},
               {"id":"web","pid":303,"startedAt":"2026-12-06T08:09:30.000Z","state":"running","uptimeMs":30000,"restarts":0,"lastStartReason":"deploy"}]}],
"services":[{"id":"cache","process":{"id":"cache","pid":400,"state":"running","uptimeMs":7200000,"restarts":0}}],
"singletons":[{"id":"scheduler","process":{"id":"scheduler","pid":500,"state":"running","uptimeMs":30000,"restarts":0,"lastStartReason":"deploy"}}]}`
	events := []eventEntry{
		{At: "2026-12-06T08:09:00.000Z", Message: "deploy starting", Data: json.RawMessage(`{"releaseId":"r3"}`)},
		{At: "2026-12-06T08:09:10.000Z", Message: "process exited", Data: json.RawMessage(`{"processId":"worker#1","releaseId":"r3","code":3,"id":"worker#1","signal":null}`)},
		{At: "2026-12-06T08:09:11.000Z", Message: "process started", Data: json.RawMessage(`{"processId":"worker#1","releaseId":"r3","command":"x","id":"worker#1","pid":9,"reason":"crash"}`)},
		{At: "2026-12-06T08:09:12.000Z", Message: "process exited", Data: json.RawMessage(`{"processId":"web","releaseId":"r1","code":null,"id":"web","signal":"SIGTERM"}`)},
		{At: "2026-12-06T08:09:20.000Z", Message: "restart limit reached", Data: json.RawMessage(`{"processId":"worker#1","releaseId":"r3","id":"worker#1","maxRestarts":5,"windowMs":60000}`)},
	}
	plan := &jsconfig.Plan{Processes: []jsconfig.Process{{ID: "web", Policy: "proxied"}, {ID: "worker", Policy: "companion"}, {ID: "scheduler", Policy: "singleton"}, {ID: "cache", Policy: "service"}}}
	// Without rssBytes (no memory block) the CLI measures the group
	// itself: here it can for pid 303 only (200 is, say, in another pid
	// namespace).
	measure := func(pid int, startedAt time.Time) (int64, bool) {
		return 12<<20 + 512<<10, pid == 303 && startedAt.Equal(time.Date(2026, 12, 6, 8, 9, 30, 0, time.UTC))
	}
	facts := daemonFacts{pid: 42, started: now.Add(-3*time.Hour - 5*time.Minute), config: "/srv/shop/rollbridge.js", rss: measure}
	got, err := statusScreen([]byte(raw), facts, plan, events, now, palette{})
	if err != nil {
		t.Fatal(err)
	}
	want := `shop  daemon pid 42, up 3h 5m, version 0.2.0
  proxy   127.0.0.1:8080 → r3
  config  /srv/shop/rollbridge.js (used by this command)
  socket  /run/shop.sock

RELEASE  REVISION  STATE     AGE     
r3       ccc       active    30s     1 open connection
r2       bbb       draining  10m 0s  3 open connections, draining for 30s
r1       -         stopped   1h 10m  stopped 10m 0s ago

PROCESS    RELEASE  POLICY     PID  STATE            UPTIME  RESTARTS                    RSS       PORT
worker#0   r3       companion  301  running          30s     2 (last: crash)             50.0 MiB  -
worker#1   r3       companion  -    failed (code 3)  -       5 + 1 memory (last: crash)  -         -
web        r3       proxied    303  running          30s     0                           12.5 MiB  18002
web        r2       proxied    200  running          10m 0s  0                           -         18001
scheduler  -        singleton  500  running          30s     0                           -         -
cache      -        service    400  running          2h 0m   0                           -         -

1 orphaned process (left by an earlier daemon; see "rollbridge recover"):
  old pid 77

Recent problems (all events: rollbridge events):
  08:09:10  process crashed            processId=worker#1 releaseId=r3 code=3 signal=null
  08:09:20  restart limit reached      processId=worker#1 releaseId=r3 maxRestarts=5 windowMs=60000
`
	want = strings.Replace(want, "AGE     \n", "AGE\n", 1)
	if got != want {
		t.Errorf("screen:\n%s\nwant:\n%s", got, want)
	}
	if n := strings.Count(got, "\n"); n > 30 {
		t.Errorf("%d lines: more than one screen", n)
	}
	// With colour, the words stay: colour never replaces them.
	coloured, _ := statusScreen([]byte(raw), facts, plan, events, now, palette{on: true})
	if !strings.Contains(coloured, "\033[32mactive\033[0m") || !strings.Contains(coloured, "\033[33mdraining\033[0m") || !strings.Contains(coloured, "\033[31mfailed\033[0m (code 3)") {
		t.Errorf("coloured screen:\n%q", coloured)
	}
	if stripANSI(coloured) != got {
		t.Errorf("the coloured screen says something else than the plain one:\n%s", stripANSI(coloured))
	}
}

// stripANSI removes SGR escape sequences.
func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\033' {
			for i < len(s) && s[i] != 'm' {
				i++
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Event data as key=value: null stays null (it once showed as ""),
// strings with spaces are quoted, objects stay compact JSON, and "id"
// is left out where it repeats processId.
func TestEventDataFields(t *testing.T) {
	got := strings.Join(dataFields(json.RawMessage(`{"processId":"web","releaseId":null,"code":null,"id":"web","signal":"SIGTERM","error":"connect ECONNREFUSED 1.2.3.4:5","empty":"","logs":[{"a":1}],"n":1.5}`)), " ")
	want := `processId=web releaseId=null code=null signal=SIGTERM error="connect ECONNREFUSED 1.2.3.4:5" empty="" logs=[{"a":1}] n=1.5`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if f := dataFields(json.RawMessage(`{"id":"other","processId":"web"}`)); strings.Join(f, " ") != "id=other processId=web" {
		t.Errorf("an id that does not repeat processId is kept: %v", f)
	}
}

// The foreground daemon's log on a terminal: each JSON event line becomes
// one readable line, also when a line arrives in pieces; anything else
// (console output of the config) passes through unchanged.
func TestReadableLog(t *testing.T) {
	var out strings.Builder
	w := &readableLog{out: &out, zone: time.UTC}
	for _, piece := range []string{
		"config says hi\n",
		`{"at":"2026-12-06T08:12:03.000Z","data":{"releaseId":"r2","releasePath":"/srv/r2","revision":"abc"},"mess`,
		`age":"deploy starting"}` + "\n" + `{"at":"2026-12-06T08:12:04.000Z","data":{},"message":"signal ignored"}` + "\n",
	} {
		if n, err := w.Write([]byte(piece)); n != len(piece) || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	want := "config says hi\n" +
		"08:12:03  deploy starting            releaseId=r2 releasePath=/srv/r2 revision=abc\n" +
		"08:12:04  signal ignored\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

// After a start that re-adopted, the screen says what came back and what
// did not; after a refused one, why nothing did. An ordinary start says
// nothing about it.
func TestStatusScreenReadoption(t *testing.T) {
	now := time.Date(2026, 12, 6, 8, 10, 0, 0, time.UTC)
	base := `"activeReleaseId":"r3","application":"shop","proxy":{"host":"127.0.0.1","port":8080},
"releases":[{"activatedAt":"2026-12-06T07:00:00.000Z","releaseId":"r3","state":"active",
 "processes":[{"id":"web","pid":10,"state":"running","outputCaptured":false},{"id":"worker","pid":11,"state":"running","outputCaptured":false}]}],
"services":[{"id":"cache","process":{"id":"cache","pid":12,"state":"running"}}],"singletons":[]`
	cases := []struct{ name, readoption, want string }{
		{"re-adopted", `,"readoption":{"at":"2026-12-06T08:07:00.000Z","fdStore":false,"notReadopted":[{"id":"web before-switch command","pid":9,"reason":"x","releaseId":"r3"}],"processes":3,"refused":null,"releases":["r3"]}`,
			"  restart re-adopted r3 (3 processes) 3m 0s ago from the previous daemon\n" +
				"          output of 2 processes not captured: their pipes were lost with the previous daemon\n" +
				"          1 process not re-adopted (listed as orphans)\n"},
		{"refused", `,"readoption":{"at":"2026-12-06T08:09:30.000Z","fdStore":true,"notReadopted":[],"processes":0,"refused":"the config changed","releases":[]}`,
			"  restart nothing was re-adopted after the previous daemon ended 30s ago: the config changed\n"},
		{"ordinary start", ``, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			screen, err := statusScreen([]byte(`{`+base+c.readoption+`}`), daemonFacts{}, nil, nil, now, palette{})
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			lines := strings.SplitAfter(screen, "\n")
			for i, line := range lines {
				if strings.HasPrefix(line, "  restart ") {
					got = line
					for _, more := range lines[i+1:] {
						if !strings.HasPrefix(more, "          ") {
							break
						}
						got += more
					}
				}
			}
			if got != c.want {
				t.Fatalf("restart lines %q, want %q\n%s", got, c.want, screen)
			}
		})
	}
}
