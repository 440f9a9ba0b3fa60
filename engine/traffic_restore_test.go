package engine

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

func decodeJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// The traffic member is read back exactly: a pause keeps its deadline or
// comes back expired, maintenance its message; anything of another shape
// is an error (and restores nothing), never a guess.
func TestParseSavedTraffic(t *testing.T) {
	now := time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC)
	iso := func(d time.Duration) string { return runtime.ISOTime(now.Add(d)) }
	pause := func(at string, max, expired string) string {
		return `{"deployHold":null,"maintenance":null,"paused":{"expired":` + expired + `,"expiresAt":"x","maxPauseMs":` + max + `,"pausedAt":"` + at + `"},"state":"paused"}`
	}
	maint := func(msg, retry string) string {
		return `{"maintenance":{"enabledAt":"` + iso(-time.Hour) + `","message":` + msg + `,"retryAfterSeconds":` + retry + `},"paused":null,"state":"maintenance"}`
	}
	type want struct {
		deadline    time.Time // zero: no pause
		expired     bool
		message     string // "-": no maintenance
		retry       time.Duration
		errContains string
	}
	cases := []struct {
		name, in string
		want     want
	}{
		{"absent", `null`, want{message: "-"}},
		{"serving", `{"deployHold":null,"maintenance":null,"paused":null,"state":"serving"}`, want{message: "-"}},
		{"unexpired pause keeps its deadline", pause(iso(-10*time.Second), "30000", "false"), want{deadline: now.Add(20 * time.Second), message: "-"}},
		{"deadline passed while down", pause(iso(-31*time.Second), "30000", "false"), want{deadline: now.Add(-time.Second), expired: true, message: "-"}},
		{"recorded expired", pause(iso(-time.Second), "30000", "true"), want{deadline: now.Add(29 * time.Second), expired: true, message: "-"}},
		{"future start counts from now", pause(iso(time.Hour), "30000", "false"), want{deadline: now.Add(30 * time.Second), message: "-"}},
		{"maintenance", maint(`"Back at noon <b>"`, "120"), want{message: "Back at noon <b>", retry: 120 * time.Second}},
		{"maintenance and pause", `{"maintenance":{"enabledAt":"` + iso(0) + `","message":"","retryAfterSeconds":60},"paused":{"expired":false,"maxPauseMs":1000,"pausedAt":"` + iso(0) + `"}}`, want{deadline: now.Add(time.Second), message: "", retry: time.Minute}},
		{"not an object", `"paused"`, want{errContains: "traffic is not an object"}},
		{"paused not an object", `{"paused":[1]}`, want{errContains: "traffic.paused is not an object"}},
		{"no pausedAt", `{"paused":{"expired":false,"maxPauseMs":1000}}`, want{errContains: "traffic.paused.pausedAt is not a string"}},
		{"bad pausedAt", pause("yesterday", "1000", "false"), want{errContains: `traffic.paused.pausedAt is not a timestamp: "yesterday"`}},
		{"renewed pause past the limit", pause(iso(-90*time.Minute), "7200000", "false"), want{deadline: now.Add(30 * time.Minute), message: "-"}},
		{"deadline beyond the limit from now", pause(iso(0), "86400000", "false"), want{deadline: now.Add(time.Hour), message: "-"}},
		{"zero limit", pause(iso(0), "0", "false"), want{errContains: "traffic.paused.maxPauseMs is not a whole number from 1 to 31536000000"}},
		{"fractional limit", pause(iso(0), "1.5", "false"), want{errContains: "maxPauseMs"}},
		{"limit too long", pause(iso(0), "31536000001", "false"), want{errContains: "maxPauseMs"}},
		{"limit a string", pause(iso(0), `"1000"`, "false"), want{errContains: "maxPauseMs"}},
		{"expired missing", `{"paused":{"maxPauseMs":1000,"pausedAt":"` + iso(0) + `"}}`, want{errContains: "traffic.paused.expired is not true or false"}},
		{"maintenance not an object", `{"maintenance":true}`, want{errContains: "traffic.maintenance is not an object"}},
		{"message with a newline", maint(`"a\nb"`, "60"), want{errContains: "traffic.maintenance.message: The maintenance message contains the control character U+000A"}},
		{"message too long", maint(`"`+strings.Repeat("x", 1001)+`"`, "60"), want{errContains: "1001 bytes"}},
		{"message missing", `{"maintenance":{"enabledAt":"` + iso(0) + `","retryAfterSeconds":60}}`, want{errContains: "traffic.maintenance.message is not a string"}},
		{"retry zero", maint(`"x"`, "0"), want{errContains: "traffic.maintenance.retryAfterSeconds is not a whole number from 1 to 86400"}},
		{"retry too long", maint(`"x"`, "86401"), want{errContains: "retryAfterSeconds"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := parseSavedTraffic(decodeJSON(t, c.in), now)
			if c.want.errContains != "" {
				if err == nil || !strings.Contains(err.Error(), c.want.errContains) || s != nil {
					t.Fatalf("got %+v, %v; want an error with %q", s, err, c.want.errContains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.want.deadline.IsZero() && c.want.message == "-" {
				if s != nil {
					t.Fatalf("restored %+v from a serving state", s)
				}
				return
			}
			if c.want.deadline.IsZero() != (s.pause == nil) {
				t.Fatalf("pause %+v", s.pause)
			}
			if p := s.pause; p != nil && (!p.deadline().Equal(c.want.deadline) || p.expired != c.want.expired || p.timer != nil) {
				t.Fatalf("pause deadline %v expired %v, want %v %v", p.deadline(), p.expired, c.want.deadline, c.want.expired)
			}
			if c.want.message == "-" {
				if s.maintenance != nil {
					t.Fatalf("maintenance %+v", s.maintenance)
				}
			} else if m := s.maintenance; m == nil || m.message != c.want.message || m.retryAfter != c.want.retry {
				t.Fatalf("maintenance %+v", m)
			}
		})
	}
}

// eventsNamed returns the data of the engine's events with message msg.
func eventsNamed(t *testing.T, e *Engine, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, raw := range e.events.recent(0, false) {
		var ev struct {
			Message string
			Data    map[string]any
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Message == msg {
			out = append(out, ev.Data)
		}
	}
	return out
}

// stopPauseTimer ends the expiry timer a test's restored pause armed.
func stopPauseTimer(e *Engine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.traffic.pause; p != nil && p.timer != nil {
		p.timer.Stop()
	}
}

// The pause comes back from the main state file only: a sibling file (a
// retired owner's, whose successor may have resumed since) never brings
// one back, even when the main file has none.
func TestRestoreReadsTheMainStateFileOnly(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "state.json")
	now := time.Now()
	base := `"activeReleaseId":null,"orphans":[],"releases":[],"services":[],"singletons":[]`
	paused := `{"paused":{"expired":false,"maxPauseMs":600000,"pausedAt":"` + runtime.ISOTime(now.Add(-time.Minute)) + `"},"maintenance":null}`
	maintenance := `{"paused":null,"maintenance":{"enabledAt":"` + runtime.ISOTime(now) + `","message":"old","retryAfterSeconds":5}}`
	write := func(path, body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The sibling's writer (pid 1<<30) is gone, so its file is read for
	// orphans: it must still not restore traffic.
	write(siblingPath(main, 1<<30), `{`+base+`,"traffic":`+maintenance+`,"writer":{"pid":1073741824,"startTime":1}}`)
	write(main, `{`+base+`}`)
	e := New(Options{Plan: &jsconfig.Plan{StatePath: main}})
	e.loadOrphans(main)
	if obj := e.trafficObject(false); obj != nil || len(eventsNamed(t, e, "traffic state restored")) != 0 {
		t.Fatalf("a sibling file restored %v", obj)
	}

	write(main, `{`+base+`,"traffic":`+paused+`}`)
	e = New(Options{Plan: &jsconfig.Plan{StatePath: main}})
	e.loadOrphans(main)
	t.Cleanup(func() { stopPauseTimer(e) })
	got, _ := e.trafficObject(false).MarshalJSON()
	want := `{"deployHold":null,"heldBytes":0,"heldRequests":0,"maintenance":null,"paused":{"expired":false,"expiresAt":"` + runtime.ISOTime(now.Add(9*time.Minute)) + `","maxPauseMs":600000,"pausedAt":"` + runtime.ISOTime(now.Add(-time.Minute)) + `"},"state":"paused"}`
	if string(got) != want {
		t.Fatalf("restored\n%s\nwant\n%s", got, want)
	}
	ev := eventsNamed(t, e, "traffic state restored")
	if len(ev) != 1 || ev[0]["state"] != "paused" || ev[0]["source"] != "stateFile" {
		t.Fatalf("events %v", ev)
	}
}

// A traffic member of another shape is ignored with an event: the daemon
// starts serving normally, and the orphans of the same file are still
// reported.
func TestRestoreIgnoresAMalformedMember(t *testing.T) {
	me := os.Getpid()
	path := writeState(t, `{"activeReleaseId":null,"orphans":[{"id":"old","pid":`+strconv.Itoa(me)+`,"releaseId":null}],"releases":[],"services":[],"singletons":[],"traffic":{"paused":{"expired":"no","maxPauseMs":1000,"pausedAt":"2026-12-06T10:00:00.000Z"}}}`)
	os.Chmod(path, 0o600)
	e := New(Options{Plan: &jsconfig.Plan{StatePath: path}})
	e.loadOrphans(path)
	if obj := e.trafficObject(false); obj != nil {
		t.Fatalf("restored %v", obj)
	}
	ev := eventsNamed(t, e, "traffic state ignored")
	if len(ev) != 1 || ev[0]["error"] != "traffic.paused.expired is not true or false" || ev[0]["source"] != "stateFile" {
		t.Fatalf("events %v", ev)
	}
	if len(e.orphans) != 1 {
		t.Fatalf("orphans %v", e.orphans)
	}
}

// A clean shutdown while paused or in maintenance keeps the state file
// with the traffic member (a planned restart does not lose them), and the
// next daemon restores them; a retired owner's sibling file keeps none.
func TestStateFinishKeepsTheTrafficState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	e := New(Options{Plan: &jsconfig.Plan{StatePath: path}})
	e.pauseTraffic(10 * time.Minute)
	e.setMaintenance(&maintenanceState{since: time.Now(), message: "Upgrading", retryAfter: 30 * time.Second})
	stopPauseTimer(e)
	p := newPersister(e, path)
	if err := p.finish(); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Orphans []any
		Traffic map[string]any
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no state file after a shutdown in maintenance: %v", err)
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Traffic["state"] != "maintenance" || doc.Traffic["paused"] == nil || len(doc.Orphans) != 0 {
		t.Fatalf("state file:\n%s", data)
	}
	next := New(Options{Plan: &jsconfig.Plan{StatePath: path}})
	next.loadOrphans(path)
	t.Cleanup(func() { stopPauseTimer(next) })
	a, _ := e.trafficObject(true).MarshalJSON()
	b, _ := next.trafficObject(true).MarshalJSON()
	if string(a) != string(b) {
		t.Fatalf("restored\n%s\nwant\n%s", b, a)
	}

	// A retired owner finishing its sibling file leaves nothing.
	sib := newPersister(next, path)
	sib.path = siblingPath(path, os.Getpid())
	if err := sib.finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sib.path); !os.IsNotExist(err) {
		t.Fatalf("sibling file after finish: %v", err)
	}
}

// A pause renewed while on keeps its start, so its recorded limit grows
// past MaxPauseLimit: a restart must still bring it back with its
// deadline, not drop it as malformed.
func TestRenewedPauseSurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	e := New(Options{Plan: &jsconfig.Plan{StatePath: path}})
	e.pauseTraffic(time.Hour)
	stopPauseTimer(e)
	e.mu.Lock()
	e.traffic.pause.since = e.traffic.pause.since.Add(-50 * time.Minute) // paused 50 minutes ago
	e.mu.Unlock()
	e.pauseTraffic(time.Hour) // renewed: an hour from now
	stopPauseTimer(e)
	if err := newPersister(e, path).finish(); err != nil {
		t.Fatal(err)
	}
	next := New(Options{Plan: &jsconfig.Plan{StatePath: path}})
	next.loadOrphans(path)
	t.Cleanup(func() { stopPauseTimer(next) })
	if ev := eventsNamed(t, next, "traffic state ignored"); len(ev) != 0 {
		t.Fatalf("the renewed pause was ignored: %v", ev)
	}
	e.mu.Lock()
	want := e.traffic.pause.deadline()
	e.mu.Unlock()
	next.mu.Lock()
	p := next.traffic.pause
	next.mu.Unlock()
	// The file keeps milliseconds of the start and the limit: the deadline
	// may come back up to 2 ms early.
	if p == nil || p.expired || want.Sub(p.deadline()) < 0 || want.Sub(p.deadline()) > 2*time.Millisecond {
		t.Fatalf("restored %+v, want the deadline %v", p, want)
	}
}

// The traffic commands reply only once the state file records their
// change: a SIGKILL right after the reply cannot lose it. The persister
// here has no background writer, so only the commands' own writes count.
func TestTrafficCommandsWriteTheStateFileBeforeReplying(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	e := New(Options{Plan: &jsconfig.Plan{StatePath: path}})
	e.persist = newPersister(e, path)
	t.Cleanup(func() { stopPauseTimer(e) })
	recorded := func() string {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			return "no file"
		}
		var doc struct{ Traffic map[string]any }
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("state file: %v\n%s", err, data)
		}
		if doc.Traffic == nil {
			return "serving"
		}
		return doc.Traffic["state"].(string)
	}
	for _, step := range []struct{ request, want string }{
		{`{"command":"pause","drainTimeoutMs":0}`, "paused"},
		{`{"command":"maintenance","enabled":true}`, "maintenance"},
		{`{"command":"maintenance","enabled":false}`, "paused"},
		{`{"command":"resume"}`, "serving"},
	} {
		req, err := control.ParseRequest([]byte(step.request))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.HandleControl(context.Background(), req, nil); err != nil {
			t.Fatalf("%s: %v", step.request, err)
		}
		if got := recorded(); got != step.want {
			t.Fatalf("after %s the state file records %q, want %q", step.request, got, step.want)
		}
	}
}

// Once the daemon is stopping (a shutdown, or a retirement that is about
// to hand its traffic state to a successor), the traffic commands change
// nothing and say so: a change after the snapshot would be lost.
func TestTrafficCommandsRefuseOnceStopping(t *testing.T) {
	e := New(Options{Plan: &jsconfig.Plan{}})
	e.stopping.Store(true)
	for _, line := range []string{
		`{"command":"pause","drainTimeoutMs":0}`,
		`{"command":"resume"}`,
		`{"command":"maintenance","enabled":true}`,
		`{"command":"maintenance","enabled":false}`,
	} {
		req, err := control.ParseRequest([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.HandleControl(context.Background(), req, nil); !errors.Is(err, ErrShuttingDown) {
			t.Errorf("%s while stopping: %v, want ErrShuttingDown", line, err)
		}
	}
	if o := e.trafficObject(false); o != nil {
		t.Fatalf("the traffic state changed while stopping: %v", o)
	}
}
