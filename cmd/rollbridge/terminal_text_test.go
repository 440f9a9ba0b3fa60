package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// unsafeForTerminal lists what in s a terminal could act on: control
// characters other than the newline (ESC above all), C1 controls, format
// characters such as the bidi overrides, and bytes that are not UTF-8.
func unsafeForTerminal(s string) []string {
	var found []string
	for i, r := range s {
		switch {
		case r == '\n':
		case r == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				found = append(found, fmt.Sprintf("byte %#x at %d", s[i], i))
			}
		case !unicode.IsPrint(r):
			found = append(found, fmt.Sprintf("%q at byte %d", r, i))
		}
	}
	return found
}

// What a deploy group member could give as a release id or revision, or
// an application print: a title change, a screen clear, a clipboard write
// (OSC 52), an 8-bit CSI, a bidi override, a carriage return and a byte
// that is not UTF-8.
var hostileTexts = []string{
	"abc\x1b]0;PWNED\a",
	"r2\x1b[2J",
	"x\x1b]52;c;cHduZWQ=\a",
	"c1\u009b2J",
	"evil\u202etxt.exe",
	"over\rwrite",
	"bad\xffbyte",
}

func TestTermText(t *testing.T) {
	for in, want := range map[string]string{
		"r2":                   "r2",
		"café ✓ 漢字":            "café ✓ 漢字",
		"with space":           "with space",
		"":                     "",
		"abc\x1b]0;PWNED\a":    `"abc\x1b]0;PWNED\a"`,
		"r2\x1b[2J":            `"r2\x1b[2J"`,
		"c1\u009b2J":           `"c1\u009b2J"`,
		"evil\u202etxt.exe":    `"evil\u202etxt.exe"`,
		"over\rwrite":          `"over\rwrite"`,
		"tab\there":            `"tab\there"`,
		"bad\xffbyte":          `"bad\xffbyte"`,
		"zero\u200bwidth":      `"zero\u200bwidth"`,
		"isolate\u2066x\u2069": `"isolate\u2066x\u2069"`,
	} {
		if got := termText(in); got != want {
			t.Errorf("termText(%q) = %s, want %s", in, got, want)
		}
	}
	if got := termLines("Release r2\x1b[2J not found\nRun rollbridge status"); got != `"Release r2\x1b[2J not found"`+"\nRun rollbridge status" {
		t.Errorf("termLines: %q", got)
	}
}

// termJSON keeps compact JSON the same JSON, with what a terminal could
// act on as \u escapes (raw C1 controls and bidi overrides are valid in
// JSON strings; control characters below 0x20 are not).
func TestTermJSON(t *testing.T) {
	in := "{\"a\":\"c1\u009b2J\",\"b\":[\"evil\u202etxt\",\"tag\U000E0041\"],\"c\":\"café\"}"
	got := termJSON(in)
	if want := `{"a":"c1\u009b2J","b":["evil\u202etxt","tag\udb40\udc41"],"c":"café"}`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var a, b any
	if json.Unmarshal([]byte(in), &a) != nil || json.Unmarshal([]byte(got), &b) != nil || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("not the same JSON: %v vs %v", a, b)
	}
	if termJSON(`{"a":1}`) != `{"a":1}` {
		t.Error("printable JSON changed")
	}
}

// Readable events and the daemon log: a hostile value, key, message or
// time is quoted with escapes, never printed raw.
func TestEventLineEscapes(t *testing.T) {
	for _, h := range hostileTexts {
		s, _ := json.Marshal(h)
		data := fmt.Sprintf(`{"releaseId":%s,%s:1,"nested":{"x":%s},"revision":"plain"}`, s, s, s)
		for _, e := range []eventEntry{
			{At: "2026-12-06T08:12:03.000Z", Message: "deploy starting", Data: json.RawMessage(data)},
			{At: h, Message: h, Data: json.RawMessage(data)},
		} {
			line := eventLine(e, palette{}, false, time.UTC)
			if bad := unsafeForTerminal(line); len(bad) > 0 {
				t.Errorf("%q: %s in %q", h, bad, line)
			}
			if !strings.Contains(line, "revision=plain") {
				t.Errorf("a printable value is shown bare: %q", line)
			}
		}
	}
	if got := strings.Join(dataFields(json.RawMessage(`{"releaseId":"r2\u001b[2J","ok":"r3"}`)), " "); got != `releaseId="r2\x1b[2J" ok=r3` {
		t.Errorf("got %s", got)
	}
}

// The status screen: every text the daemon sends (ids, revisions,
// states, signals, names, paths) is made safe in its cell or line.
func TestStatusScreenEscapes(t *testing.T) {
	for _, h := range hostileTexts {
		s, _ := json.Marshal(h)
		raw := strings.ReplaceAll(`{"activeReleaseId":H,"application":H,"control":{"path":H},"daemonRuntime":{"version":H},
"orphans":[{"id":H,"pid":7,"releaseId":H}],"proxy":{"host":H,"port":8080},
"releases":[{"releaseId":H,"revision":H,"state":H,"activatedAt":"2026-12-06T08:00:00Z","ports":{"web":20001},
  "processes":[{"id":H,"pid":9,"state":H,"lastStartReason":H,"restarts":1},{"id":"web","state":"stopped","exitSignal":H}]}],
"services":[{"id":H,"process":{"id":H,"state":H}}],"singletons":[]}`, "H", string(s))
		events := []eventEntry{{At: "2026-12-06T08:10:00Z", Message: "deploy failed", Data: json.RawMessage(`{"error":` + string(s) + `,"releaseId":` + string(s) + `}`)}}
		out, err := statusScreen([]byte(raw), daemonFacts{pid: 1, config: "/srv/" + h}, nil, events, time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC), palette{})
		if err != nil {
			t.Fatal(err)
		}
		if bad := unsafeForTerminal(out); len(bad) > 0 {
			t.Errorf("%q: %s in\n%s", h, bad, out)
		}
		var sent string // as JSON carries it: a byte that is not UTF-8 becomes U+FFFD
		json.Unmarshal(s, &sent)
		if !strings.Contains(out, termText(sent)) {
			t.Errorf("%q is not shown escaped:\n%s", h, out)
		}
	}
}

// The summaries of deploy, rollback, restart, stop, shutdown and
// ensure-daemon.
func TestSummariesEscape(t *testing.T) {
	for _, h := range hostileTexts {
		s, _ := json.Marshal(h)
		status := []byte(strings.ReplaceAll(`{"activeReleaseId":H,"application":H,"daemonRuntime":{"version":H},"proxy":{"host":H,"port":8080},
"releases":[{"releaseId":H,"revision":H,"state":H,"processes":[{"id":H,"pid":3}]},{"releaseId":"old","state":H}]}`, "H", string(s)))
		for name, out := range map[string]string{
			"deploy":      switchSummary("Deployed", []byte(`{"activeReleaseId":`+string(s)+`,"previousReleaseId":"old"}`), status, palette{}),
			"deploy prev": switchSummary("Deployed", []byte(`{"activeReleaseId":"x","previousReleaseId":`+string(s)+`}`), nil, palette{}),
			"restart":     restartSummary([]byte(`{"restarted":[` + string(s) + `]}`)),
			"stop":        stopSummary("", status, status, palette{}),
			"stop id":     stopSummary(h, status, []byte(`{"activeReleaseId":null}`), palette{}),
			"shutdown":    shutdownSummary(status),
			"ensure":      ensureSummary(status, true, 1),
		} {
			if out == "" {
				t.Errorf("%s: no summary", name)
			}
			if bad := unsafeForTerminal(out); len(bad) > 0 {
				t.Errorf("%s, %q: %s in %q", name, h, bad, out)
			}
		}
	}
}

// Progress lines print the events' strings (ids, paths, errors) by the
// same rule, and so does the line about the operation waited for.
func TestProgressEscapes(t *testing.T) {
	for _, h := range hostileTexts {
		var out strings.Builder
		p := &progress{w: &out, web: "web"}
		for _, e := range []struct {
			msg  string
			data map[string]any
		}{
			{"deploy starting", map[string]any{"releaseId": h, "releasePath": h}},
			{"rollback starting", map[string]any{"releaseId": h}},
			{"process restart requested", map[string]any{"processId": h}},
			{"process started", map[string]any{"processId": h, "reason": "deploy", "pid": 7.0}},
			{"process started", map[string]any{"processId": h, "reason": "manual", "pid": 7.0}},
			{"traffic switched", map[string]any{"releaseId": h}},
			{"deploy failed", map[string]any{"error": h}},
			{"singleton replacement failed", map[string]any{"processId": h, "error": h}},
		} {
			p.eventLocked(streamEntry{Message: e.msg}, e.data)
		}
		cmd := h
		out.WriteString((&operationView{Command: &cmd, ReleaseID: &cmd}).describe())
		if bad := unsafeForTerminal(out.String()); len(bad) > 0 {
			t.Errorf("%q: %s in\n%s", h, bad, out.String())
		}
	}
}

// A failed deploy's processes, in the readable event forms: one line in
// the words of the failure detail, not ~1 KB of JSON.
func TestProcessesBrief(t *testing.T) {
	raw := `{"error":"Health check failed","processes":[
{"exitCauses":[{"code":3,"count":3,"signal":null}],"exits":3,"failing":true,"id":"web","lastOutput":[{"at":"x","line":"booting","stream":"stdout"},{"at":"x","line":"Error: ` + strings.Repeat("x", 100) + `","stream":"stderr"}],"restartLimitReached":true,"restarts":2},
{"exitCauses":[],"exits":0,"failing":false,"id":"idle","lastOutput":[],"restartLimitReached":false,"restarts":0},
{"exitCauses":[{"code":null,"count":1,"signal":"SIGKILL"}],"exits":1,"failing":false,"id":"worker\u001b[2J","lastOutput":[],"restartLimitReached":false,"restarts":0}],"releaseId":"r2"}`
	got := eventLine(eventEntry{At: "2026-12-06T08:12:03.000Z", Message: "deploy failed", Data: json.RawMessage(raw)}, palette{}, false, time.UTC)
	want := `08:12:03  deploy failed              error="Health check failed" processes=[web exited 3 times (code 3), restarted 2 times, restart limit reached, last output: Error: ` +
		strings.Repeat("x", 73) + `…; "worker\x1b[2J" exited 1 time (signal SIGKILL)] releaseId=r2`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if f := dataFields(json.RawMessage(`{"processes":"not a list"}`)); len(f) != 1 || f[0] != "processes=\"not a list\"" {
		t.Errorf("a processes field that is not a report stays as it is: %v", f)
	}
}

// The question before stopping the active release shows its id by the
// same rule.
func TestStopPromptEscapes(t *testing.T) {
	ctl, term, seen := recordPTY(t)
	io.WriteString(ctl, "n\n")
	s, _ := json.Marshal("r2\x1b]0;PWNED\a")
	_, err := activeStopConfirmation(term, term, "")([]byte(`{"activeReleaseId":`+string(s)+`}`), nil)
	if err == nil {
		t.Fatal("a declined stop went on")
	}
	out := strings.ReplaceAll(readBack(t, term, seen), "\r\n", "\n")
	if bad := unsafeForTerminal(out); len(bad) > 0 || !strings.Contains(out, `Stop release "r2\x1b]0;PWNED\a"? [y/N]`) {
		t.Errorf("%s in %q", bad, out)
	}
}

// The lines of a stop that waits name the processes still running by
// the same rule.
func TestStoppingProcessEscapes(t *testing.T) {
	for _, h := range hostileTexts {
		for _, p := range []stoppingProcess{{id: h, release: h, pid: 7}, {id: h, pid: 7}} {
			if bad := unsafeForTerminal(p.String()); len(bad) > 0 {
				t.Errorf("%q: %s in %q", h, bad, p.String())
			}
		}
	}
}
