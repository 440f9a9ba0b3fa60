package engine

import (
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
)

// The traffic commands' numeric fields are whole numbers within their
// bounds; anything else is refused with a message that names the field,
// its unit and the range.
func TestTrafficDurationFields(t *testing.T) {
	e, _, _ := holdEngine(t)
	for _, tc := range []struct{ line, want string }{
		{`{"command":"maintenance","enabled":true,"retryAfterSeconds":0}`, "retryAfterSeconds must be a whole number of seconds from 1 to 86400"},
		{`{"command":"maintenance","enabled":true,"retryAfterSeconds":86401}`, "retryAfterSeconds must be a whole number of seconds from 1 to 86400"},
		{`{"command":"maintenance","enabled":true,"retryAfterSeconds":1.5}`, "retryAfterSeconds must be a whole number of seconds from 1 to 86400"},
		{`{"command":"maintenance","enabled":true,"retryAfterSeconds":"60"}`, "retryAfterSeconds must be a whole number of seconds from 1 to 86400"},
		{`{"command":"pause","maxPauseMs":0}`, "maxPauseMs must be a whole number of milliseconds from 1 to 3600000"},
		{`{"command":"pause","drainTimeoutMs":-1}`, "drainTimeoutMs must be a whole number of milliseconds from 0 to 3600000"},
	} {
		req, err := control.ParseRequest([]byte(tc.line))
		if err != nil {
			t.Fatal(err)
		}
		var herr error
		if req.Command == "pause" {
			_, herr = e.handlePause(req)
		} else {
			_, herr = e.handleMaintenance(req)
		}
		if herr == nil || herr.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.line, herr, tc.want)
		}
	}
	if e.traffic.maintenance != nil || e.traffic.pause != nil {
		t.Fatal("a refused command changed the traffic state")
	}
	for _, tc := range []struct {
		line string
		want time.Duration
	}{
		{`{"command":"maintenance","retryAfterSeconds":120}`, 120 * time.Second},
		{`{"command":"maintenance"}`, DefaultMaintenanceRetry},
	} {
		req, err := control.ParseRequest([]byte(tc.line))
		if err != nil {
			t.Fatal(err)
		}
		if d, err := durationField(req, "retryAfterSeconds", time.Second, "seconds", DefaultMaintenanceRetry, time.Second, MaxRetryAfter); err != nil || d != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.line, d, err, tc.want)
		}
	}
}
