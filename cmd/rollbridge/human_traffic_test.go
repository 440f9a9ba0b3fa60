package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The terminal texts of the traffic commands and the status line for the
// states an integration test reaches only with a deploy's hold or an
// unlucky timing: a pause that expired during its drain, a deploy's hold,
// maintenance over a pause, control characters from the daemon.
func TestTrafficTexts(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	parse := func(raw string) trafficReply {
		t.Helper()
		var r trafficReply
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	expired := parse(`{"inFlight":2,"traffic":{"state":"pause-expired","paused":{"expired":true,"expiresAt":"2026-12-06T11:59:59Z","pausedAt":"2026-12-06T11:59:58Z"}}}`)
	if got := pauseText(expired, now); got != "Traffic paused: new requests are held (not forwarded, not refused). 2 requests are still in flight.\n"+
		"The pause already reached its --max-pause: held and new requests get 503 until you run \"rollbridge resume\".\nResume with: rollbridge resume\n" {
		t.Errorf("pause that expired during its drain: %q", got)
	}
	inMaintenance := parse(`{"activeReleaseId":"v2","pausedMs":4200,"released":0,"wasPaused":true,"traffic":{"state":"maintenance","maintenance":{"message":"x","retryAfterSeconds":60}}}`)
	if got := resumeText(inMaintenance); got != "Resumed after 4.2 s, but maintenance is on: clients get the maintenance response until \"rollbridge maintenance off\".\n" {
		t.Errorf("resume in maintenance: %q", got)
	}
	noRelease := parse(`{"activeReleaseId":null,"pausedMs":1000,"released":3,"wasPaused":true,"traffic":{"state":"serving"}}`)
	if got := resumeText(noRelease); got != "Resumed: 3 held requests went on to no release (none is active: they got 503) after 1.0 s.\n" {
		t.Errorf("resume without a release: %q", got)
	}
	offPaused := parse(`{"wasEnabled":true,"traffic":{"state":"paused","paused":{"expired":false}}}`)
	if got := maintenanceText(false, offPaused); got != "Maintenance is off.\nTraffic is still paused: new requests are held until \"rollbridge resume\".\n" {
		t.Errorf("maintenance off during a pause: %q", got)
	}
	// A deploy's hold is state "paused" too, but resume cannot end it.
	offHeld := parse(`{"wasEnabled":true,"traffic":{"state":"paused","paused":null,"deployHold":{"releaseId":"v3"}}}`)
	if got := maintenanceText(false, offHeld); got != "Maintenance is off.\nTraffic is held by the deploy of release v3 (deploy --hold-traffic): new requests go on when that deploy switches or is called off.\n" {
		t.Errorf("maintenance off during a deploy's hold: %q", got)
	}
	var tv trafficView
	json.Unmarshal([]byte(`{"state":"maintenance","heldRequests":3,
		"maintenance":{"enabledAt":"2026-12-06T11:58:00Z","message":"evil\u001b[2Jtext","retryAfterSeconds":30},
		"deployHold":{"releaseId":"v3","heldAt":"2026-12-06T11:59:50Z","expiresAt":"2026-12-06T12:00:20Z"}}`), &tv)
	got := strings.Join(trafficLines(&tv, now, palette{}), "\n")
	want := `maintenance since 11:58:00 (2m 0s): 503 with Retry-After 30 and "evil\x1b[2Jtext"` + "\n" +
		`held by the deploy of release v3 since 11:59:50 (10s), 3 held requests; --max-pause runs out at 12:00:20`
	if got != want {
		t.Errorf("traffic lines:\n%s\nwant:\n%s", got, want)
	}
	if lines := trafficLines(&trafficView{State: "serving"}, now, palette{}); lines != nil {
		t.Errorf("serving: %q", lines)
	}
}

// A deploy's hold on the progress names its limit as --max-pause, not as
// a promise ("at most"): a command running then takes up to 6 s to stop.
func TestHoldProgressNamesMaxPause(t *testing.T) {
	var out strings.Builder
	p := &progress{w: &out, web: "web"}
	p.eventLocked(streamEntry{Message: "traffic paused"}, map[string]any{"by": "deploy", "maxPauseMs": 20000.0, "releaseId": "v2"})
	p.eventLocked(streamEntry{Message: "traffic paused"}, map[string]any{"by": "operator", "maxPauseMs": 20000.0})
	if got := out.String(); got != "  holding new requests (--max-pause 20s) while requests in flight finish\n" {
		t.Errorf("progress: %q", got)
	}
	// As the operator writes it: "2m", not Go's "2m0s".
	out.Reset()
	p.eventLocked(streamEntry{Message: "traffic paused"}, map[string]any{"by": "deploy", "maxPauseMs": 120000.0, "releaseId": "v3"})
	if got := out.String(); got != "  holding new requests (--max-pause 2m) while requests in flight finish\n" {
		t.Errorf("progress: %q", got)
	}
}
