package main

import (
	"strings"
	"testing"
)

// The summaries say what the reply and the status say, and leave out what
// they do not: no status, or one without the fields, gives a shorter
// line, never an invented value. An unreadable reply gives "" (the JSON
// is printed instead).
func TestSummaries(t *testing.T) {
	status := `{"activeReleaseId":"r2","proxy":{"host":"127.0.0.1","port":8080},"daemonRuntime":{"version":"0.2.0"},"application":"shop",
"releases":[{"releaseId":"r1","revision":"aaa","state":"draining","connectionCount":2,"processes":[{"id":"web","pid":10},{"id":"worker","pid":11},{"id":"old"}]},
            {"releaseId":"r2","revision":"bbb","state":"active","processes":[{"id":"web","pid":12}]}],
"services":[{"id":"cache","process":{"id":"cache","pid":13}}],"singletons":[{"id":"s","process":{"id":"s"}}]}`
	stopped := `{"activeReleaseId":null,"releases":[{"releaseId":"r2","state":"stopped"}]}`
	cases := []struct {
		name, got, want string
	}{
		{"deploy", switchSummary("Deployed", []byte(`{"status":"success","activeReleaseId":"r2","previousReleaseId":"r1"}`), []byte(status), palette{}),
			"Deployed r2 (rev bbb): active on 127.0.0.1:8080\n  previous r1 draining, 2 open connections\n"},
		{"deploy, no status", switchSummary("Deployed", []byte(`{"activeReleaseId":"r2","previousReleaseId":"r1"}`), nil, palette{}),
			"Deployed r2: active\n  previous r1\n"},
		{"first deploy, status without fields", switchSummary("Deployed", []byte(`{"activeReleaseId":"r1","previousReleaseId":null}`), []byte(`{}`), palette{}),
			"Deployed r1: active\n  no previous release\n"},
		{"rollback", switchSummary("Rolled back to", []byte(`{"activeReleaseId":"r1","previousReleaseId":"r2"}`), []byte(`{"releases":[{"releaseId":"r1","revision":"r1"},{"releaseId":"r2","state":"stopped"}]}`), palette{}),
			"Rolled back to r1: active\n  previous r2 stopped\n"},
		{"deploy in maintenance", switchSummary("Deployed", []byte(`{"activeReleaseId":"r2","previousReleaseId":null}`),
			[]byte(`{"traffic":{"state":"maintenance","maintenance":{"enabledAt":"bad","message":"Back soon.","retryAfterSeconds":60}}}`), palette{}),
			"Deployed r2: active\n  no previous release\n  traffic maintenance: 503 with Retry-After 60 and \"Back soon.\"\n"},
		{"deploy while paused", switchSummary("Deployed", []byte(`{"activeReleaseId":"r2","previousReleaseId":null}`),
			[]byte(`{"traffic":{"state":"paused","heldRequests":2,"paused":{"expired":false,"expiresAt":"bad","pausedAt":"bad"}}}`), palette{}),
			"Deployed r2: active\n  no previous release\n  traffic paused, 2 held requests\n"},
		{"deploy, unreadable reply", switchSummary("Deployed", []byte(`[]`), []byte(status), palette{}), ""},
		{"restart", restartSummary([]byte(`{"status":"success","restarted":["worker#0","cache"]}`)), "Restarted 2 processes: worker#0, cache\n"},
		{"restart nothing", restartSummary([]byte(`{"status":"success","restarted":[]}`)), "Restarted nothing: no running companion, singleton or service matched.\n"},
		{"stop active", stopSummary("", []byte(status), []byte(`{"activeReleaseId":null}`), palette{}),
			"Stopped release r2 (1 process, was active).\nNo release is active: the proxy answers 503 until the next deploy or rollback.\n"},
		{"stop draining", stopSummary("r1", []byte(status), []byte(status), palette{}),
			"Stopped release r1 (2 processes, was draining).\nActive release: r2\n"},
		{"stop stopped", stopSummary("r2", []byte(stopped), []byte(stopped), palette{}),
			"Release r2 was already stopped.\nNo release is active: the proxy answers 503 until the next deploy or rollback.\n"},
		{"stop, nothing active", stopSummary("", []byte(stopped), []byte(stopped), palette{}), "No release was active; nothing was stopped.\n"},
		{"stop, no status before", stopSummary("", nil, []byte(`{"activeReleaseId":null}`), palette{}),
			"Stopped the active release.\nNo release is active: the proxy answers 503 until the next deploy or rollback.\n"},
		{"stop, unreadable reply", stopSummary("", []byte(status), []byte(`nope`), palette{}), ""},
		{"shutdown", shutdownSummary([]byte(status)), "The daemon of shop has shut down; every process it ran has stopped (4 processes were running).\n"},
		{"shutdown, no status", shutdownSummary(nil), "The daemon has shut down and stopped every process it ran.\n"},
		{"ensure, found", ensureSummary([]byte(status), false, 42), "Daemon already running (pid 42, version 0.2.0): proxy on 127.0.0.1:8080, active release r2\n"},
		{"ensure, started, Node.js status", ensureSummary([]byte(`{"activeReleaseId":null,"proxy":{"host":"127.0.0.1"}}`), true, 0), "Started the daemon, no active release\n"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.name, c.got, c.want)
		}
	}
}

// stop's one-line help says the site answers 503 only for the active
// release: a draining or stopped one named by --release-id leaves the
// site serving.
func TestStopHelpLine(t *testing.T) {
	var out, errOut strings.Builder
	root := newRoot(&out, &errOut)
	stop, _, err := root.Find([]string{"stop"})
	if err != nil {
		t.Fatal(err)
	}
	want := "Stop the active release (the site answers 503 until the next deploy) or the release named by --release-id, at once, without draining."
	if stop.Short != want {
		t.Errorf("stop's help line:\n%s\nwant\n%s", stop.Short, want)
	}
}
