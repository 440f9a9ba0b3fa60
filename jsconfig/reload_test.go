package jsconfig

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func mustPlan(t *testing.T, dir, src string) *Plan {
	t.Helper()
	p := writeConfig(t, dir, "rollbridge.js", src)
	plan, issues, err := Check(p, Options{})
	if err != nil || len(issues) > 0 {
		t.Fatalf("config %s: err %v issues %v", src, err, issues)
	}
	return plan
}

func TestCheckReload(t *testing.T) {
	const base = `export default {
  statePath: "/var/lib/app.json",
  control: {mode: "660", owner: 1000},
  proxy: {host: "127.0.0.1", port: 8182},
  processes: [
    {id: "beacon", policy: "service", command: "b", port: 7330},
    {id: "web", policy: "proxied", command: "w", port: {from: 18000, to: 18099}},
    {id: "worker", command: "k", replicas: 2}
  ]
};`
	dir := filepath.Join(t.TempDir(), "app")
	current := mustPlan(t, dir, base)
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unchanged", base, ""},
		{"live changes only", `export default {
  statePath: "/var/lib/app.json", control: {mode: 0o660, owner: 1000},
  proxy: {host: "127.0.0.1", port: 8182, drainTimeoutMs: 1, forceStopTimeoutMs: 5, healthPath: "/up", healthTimeoutMs: 9},
  releaseRetention: {keep: 1}, legacyTakeover: {screens: ["x"]},
  processes: [
    {id: "worker", command: "other", replicas: 2, stopSignal: "SIGINT", env: {A: "1"}, memory: {limitBytes: 1}},
    {id: "web", policy: "proxied", command: "w2", cwd: "x", port: {from: 18000, to: 18099}, health: false},
    {id: "beacon", policy: "service", command: "b", port: {from: 7330, to: 7330}, deployStrategy: "persistent"}
  ]
};`, ""},
		{"application and statePath", `export default {application: "renamed", control: {mode: "660", owner: 1000, path: "/tmp/rollbridge-app.sock"},
  proxy: {port: 8182}, processes: [
    {id: "beacon", policy: "service", command: "b", port: 7330},
    {id: "web", policy: "proxied", command: "w", port: {from: 18000, to: 18099}},
    {id: "worker", command: "k", replicas: 2}]};`, "Config changes to application, statePath cannot be applied live; restart the Rollbridge daemon before deploying.\n  application: \"app\" → \"renamed\"\n  statePath: \"/var/lib/app.json\" → unset"},
		{"owner as string", `export default {statePath: "/var/lib/app.json", control: {mode: "660", owner: "1000"}, proxy: {port: 8182}, processes: [
    {id: "beacon", policy: "service", command: "b", port: 7330},
    {id: "web", policy: "proxied", command: "w", port: {from: 18000, to: 18099}},
    {id: "worker", command: "k", replicas: 2}]};`, "Config changes to control cannot be applied live; restart the Rollbridge daemon before deploying.\n  control.owner: 1000 → \"1000\""},
		{"proxy and processes", `export default {statePath: "/var/lib/app.json", control: {mode: "660", owner: 1000}, proxy: {host: "0.0.0.0", port: 9000}, processes: [
    {id: "beacon", policy: "service", deployStrategy: "handoff", command: "b", port: {from: 7330, to: 7340}},
    {id: "web", policy: "proxied", command: "w", port: {from: 18000, to: 18099}},
    {id: "worker", command: "k", replicas: 2}]};`, "Config changes to proxy.host, proxy.port, processes cannot be applied live; restart the Rollbridge daemon before deploying.\n  proxy.host: \"127.0.0.1\" → \"0.0.0.0\"\n  proxy.port: 8182 → 9000\n  processes[0] \"beacon\": deployStrategy \"persistent\" → \"handoff\", port 7330 → 7330-7340"},
		{"upstream default follows host", `export default {statePath: "/var/lib/app.json", control: {mode: "660", owner: 1000}, proxy: {host: "localhost", port: 8182, upstreamHost: "127.0.0.1"}, processes: [
    {id: "beacon", policy: "service", command: "b", port: 7330},
    {id: "web", policy: "proxied", command: "w", port: {from: 18000, to: 18099}},
    {id: "worker", command: "k", replicas: 2}]};`, "Config changes to proxy.host cannot be applied live; restart the Rollbridge daemon before deploying.\n  proxy.host: \"127.0.0.1\" → \"localhost\""},
		{"process removed", `export default {statePath: "/var/lib/app.json", control: {mode: "660", owner: 1000}, proxy: {port: 8182}, processes: [
    {id: "web", policy: "proxied", command: "w", port: {from: 18000, to: 18099}},
    {id: "worker", command: "k", replicas: 2}]};`, "Config changes to processes cannot be applied live; restart the Rollbridge daemon before deploying.\n  process \"beacon\": removed (the running daemon has it, the config does not)"},
		{"replicas", `export default {statePath: "/var/lib/app.json", control: {mode: "660", owner: 1000}, proxy: {port: 8182}, processes: [
    {id: "beacon", policy: "service", command: "b", port: 7330},
    {id: "web", policy: "proxied", command: "w", port: {from: 18000, to: 18099}},
    {id: "worker", command: "k", replicas: 3}]};`, "Config changes to processes cannot be applied live; restart the Rollbridge daemon before deploying.\n  processes[2] \"worker\": replicas 2 → 3"},
		{"renamed process", `export default {statePath: "/var/lib/app.json", control: {mode: "660", owner: 1000}, proxy: {port: 8182}, processes: [
    {id: "beacon2", policy: "service", command: "b", port: 7330},
    {id: "web", policy: "proxied", command: "w", port: {from: 18000, to: 18099}},
    {id: "worker", command: "k", replicas: 2}]};`, "Config changes to processes cannot be applied live; restart the Rollbridge daemon before deploying.\n  processes[0] \"beacon2\": added\n  process \"beacon\": removed (the running daemon has it, the config does not)"},
		{"mode and several fields of one process", `export default {statePath: "/var/lib/app.json", control: {mode: "600", owner: 1000}, proxy: {port: 8182}, processes: [
    {id: "worker", policy: "singleton", command: "k", port: 7400},
    {id: "web", policy: "proxied", command: "w", port: {from: 18000, to: 18099}},
    {id: "beacon", policy: "service", command: "b", port: 7330}]};`, "Config changes to control, processes cannot be applied live; restart the Rollbridge daemon before deploying.\n  control.mode: 0660 → 0600\n  processes[0] \"worker\": policy \"companion\" → \"singleton\", replicas 2 → 1, port none → 7400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := mustPlan(t, dir, tc.src)
			err := CheckReload(current, next)
			// want is the refusal, then one indented line per change.
			got := ""
			if err != nil {
				got = err.Error()
				if strings.Contains(got, "\n") {
					t.Fatalf("the refusal is one line on the wire, got %q", got)
				}
				var re *ReloadError
				if !errors.As(err, &re) {
					t.Fatalf("%T is no *ReloadError", err)
				}
				b, merr := re.ReplyFields().MarshalJSON()
				var fields struct {
					Changes []string `json:"changes"`
				}
				if merr != nil || json.Unmarshal(b, &fields) != nil {
					t.Fatalf("reply fields %s: %v", b, merr)
				}
				for _, c := range fields.Changes {
					got += "\n  " + c
				}
			}
			if got != tc.want {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}
