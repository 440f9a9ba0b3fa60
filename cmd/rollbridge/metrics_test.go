package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads /metrics with the Prometheus text parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("content type %q", ct)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return families
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.Metric {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	dir := t.TempDir()
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{},
		args: []string{"--metrics-address", addr}}
	// Private ports: the broken release's web never listens, and another
	// test's web on its port would pass its health check.
	from, to := privatePorts()
	d.writeConfig(fmt.Sprintf(`releaseRetention: {keep: 1}, processes: [{id: "worker", command: "exec FIXTURE", restartDelayMs: 20},
    {id: "web", policy: "proxied", command: "test ! -e {{releasePath}}/broken && exec FIXTURE -listen", port: {from: %d, to: %d}, health: {intervalMs: 20, timeoutMs: 500}}]`, from, to))
	d.start()
	t.Cleanup(d.cleanup)
	if code, _ := d.get("/"); code != 503 {
		t.Fatalf("before a deploy: %d", code)
	}
	d.deploy("v1")
	for i := 0; i < 7; i++ {
		d.get("/release")
	}
	d.get("/status?code=404")
	// A crash, a manual restart and a failed deploy.
	worker := processEntry(release(d.status(), "v1")["processes"], "worker")
	syscall.Kill(-int(worker["pid"].(float64)), syscall.SIGKILL)
	waitUntil(t, "the worker to restart", 10*time.Second, func() bool {
		return processEntry(release(d.status(), "v1")["processes"], "worker")["restarts"] == 1.0
	})
	if r := d.cli("restart", "--process", "worker"); r.code != 0 {
		t.Fatalf("restart: %+v", r)
	}
	broken := filepath.Join(dir, "releases", "v2")
	os.MkdirAll(broken, 0o755)
	os.WriteFile(filepath.Join(broken, "broken"), nil, 0o644)
	if r := d.cli("deploy", "--release-path", broken, "--release-id", "v2"); r.code != 1 {
		t.Fatalf("broken deploy: %+v", r)
	}

	m := scrape(t, addr)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"rollbridge_proxy_requests_total", map[string]string{"release": "", "class": "5xx"}, 1},
		{"rollbridge_proxy_requests_total", map[string]string{"release": "v1", "class": "2xx"}, 7},
		{"rollbridge_proxy_requests_total", map[string]string{"release": "v1", "class": "4xx"}, 1},
		{"rollbridge_proxy_request_duration_seconds", map[string]string{"release": "v1"}, 8},
		{"rollbridge_deploys_total", map[string]string{"result": "success"}, 1},
		{"rollbridge_deploys_total", map[string]string{"result": "failure"}, 1},
		{"rollbridge_deploy_duration_seconds", map[string]string{"result": "success"}, 1},
		{"rollbridge_health_check_duration_seconds", map[string]string{"result": "failure"}, 1},
		{"rollbridge_process_restarts_total", map[string]string{"process": "worker", "reason": "crash"}, 1},
		{"rollbridge_process_restarts_total", map[string]string{"process": "worker", "reason": "manual"}, 1},
		{"rollbridge_release_state", map[string]string{"release": "v1", "state": "active"}, 1},
		{"rollbridge_proxy_open_connections", map[string]string{"release": "v1", "kind": "websocket"}, 0},
		{"rollbridge_info", map[string]string{"application": "itest"}, 1},
		// The traffic gate, unused: every series there, at 0.
		{"rollbridge_traffic_paused", nil, 0},
		{"rollbridge_traffic_maintenance", nil, 0},
		{"rollbridge_held_requests", nil, 0},
		{"rollbridge_held_requests_total", nil, 0},
		{"rollbridge_gate_refused_total", map[string]string{"reason": "limit"}, 0},
		{"rollbridge_gate_refused_total", map[string]string{"reason": "expired"}, 0},
		{"rollbridge_gate_refused_total", map[string]string{"reason": "maintenance"}, 0},
	} {
		got, ok := value(t, m, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, name := range []string{"rollbridge_process_resident_memory_bytes", "process_resident_memory_bytes", "process_open_fds", "go_goroutines"} {
		if v, ok := value(t, m, name, nil); !ok || v <= 0 {
			t.Errorf("%s = %v (found %v)", name, v, ok)
		}
	}
	for name, kind := range map[string]dto.MetricType{"rollbridge_traffic_paused": dto.MetricType_GAUGE, "rollbridge_held_requests": dto.MetricType_GAUGE,
		"rollbridge_held_requests_total": dto.MetricType_COUNTER, "rollbridge_gate_refused_total": dto.MetricType_COUNTER} {
		if f := m[name]; f == nil || f.GetType() != kind {
			t.Errorf("%s is not a %v", name, kind)
		}
	}
	if t.Failed() {
		resp, _ := http.Get("http://" + addr + "/metrics")
		var b [1 << 16]byte
		n, _ := resp.Body.Read(b[:])
		fmt.Println(string(b[:n]))
	}
	if !strings.Contains(d.stdout.String(), `"message":"metrics listening"`) {
		t.Fatal("no metrics listening event")
	}
	// Series of releases no longer retained go with them (keep: 1).
	os.Remove(filepath.Join(broken, "broken"))
	d.deploy("v3")
	d.deploy("v4")
	waitUntil(t, "v1 to be pruned", 10*time.Second, func() bool { return release(d.status(), "v1") == nil })
	m = scrape(t, addr)
	if _, ok := value(t, m, "rollbridge_proxy_requests_total", map[string]string{"release": "v1"}); ok {
		t.Fatal("request series of a pruned release are still exported")
	}
	d.shutdown()
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Fatal("the metrics listener outlived the daemon")
	}
}
