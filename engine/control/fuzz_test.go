package control

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseRequest feeds arbitrary lines to the control-protocol parser:
// it never panics, every failure is one of the daemon's documented
// answers, and whatever it accepts can be read with every field accessor.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"", "   ", `{"command":"status"}`, `{"command":"deploy","releasePath":"/x"}`, "{", `{"command":1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := ParseRequest(line)
		if err != nil {
			msg := err.Error()
			if req != nil {
				t.Fatalf("both a request and an error (%q)", msg)
			}
			if !strings.Contains(msg, "JSON") && msg != "Control command must be an object" && !strings.HasPrefix(msg, "Unknown command: ") {
				t.Fatalf("undocumented parse error %q for %q", msg, line)
			}
			if !json.Valid(Failure(msg)) {
				t.Fatalf("the error response is not JSON: %q", Failure(msg))
			}
			return
		}
		for _, name := range []string{"command", "releasePath", "releaseId", "revision", "limit", "processId", "policy", "attestation", "handoff"} {
			req.OptionalString(name)
			req.RequiredString(name)
			req.Number(name)
			req.Bool(name)
			req.Raw(name)
		}
		if !json.Valid(Success([]byte(`{"message":"ok"}`))) {
			t.Fatal("success envelope")
		}
	})
}
