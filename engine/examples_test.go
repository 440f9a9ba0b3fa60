package engine

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge/jsconfig"
)

func loadExample(t *testing.T, name string) *jsconfig.Plan {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := jsconfig.Load(abs, jsconfig.Options{Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return plan
}

// renderAll renders every process of plan for a release, with each port
// set to the start of its range, as a deploy would.
func renderAll(t *testing.T, plan *jsconfig.Plan) map[string]*RenderedProcess {
	t.Helper()
	var ports []PortAssignment
	for _, p := range plan.Processes {
		if p.Port != nil {
			ports = append(ports, PortAssignment{ID: p.ID, Port: p.Port.From})
		}
	}
	out := map[string]*RenderedProcess{}
	for i := range plan.Processes {
		p := &plan.Processes[i]
		c := &TemplateContext{Application: plan.Application, ReleaseID: "r1", ReleasePath: "/srv/app/releases/r1", Revision: "r1",
			ProcessID: p.ID, ReplicaCount: p.Replicas, Ports: ports, Proxy: plan.Proxy, LookupEnv: func(string) (string, bool) { return "", false }}
		if p.Port != nil {
			port := p.Port.From
			c.Port = &port
		}
		r, err := RenderProcess(p, c, nil)
		if err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		out[p.ID] = r
	}
	return out
}

func TestExamplesLoadAndRender(t *testing.T) {
	for _, name := range []string{"rollbridge.js", "rollbridge.cjs", "tensorbuzz.com.js"} {
		renderAll(t, loadExample(t, name))
	}
}

func TestTensorBuzzExample(t *testing.T) {
	plan := loadExample(t, "tensorbuzz.com.js")
	if plan.Application != "tensorbuzz" || plan.Control.Path != "/tmp/rollbridge-tensorbuzz.sock" {
		t.Fatalf("application %q control %q", plan.Application, plan.Control.Path)
	}
	px := plan.Proxy
	if px.Host != "127.0.0.1" || px.Port != 4500 || px.HealthPath != "/ping" || px.HealthTimeoutMs != 30000 || px.DrainTimeoutMs != 60000 || px.ForceStopTimeoutMs != 10000 {
		t.Fatalf("proxy %+v", px)
	}
	want := []struct {
		id       string
		policy   jsconfig.Policy
		from, to int
	}{{"beacon", jsconfig.PolicyService, 7330, 7330}, {"background-jobs-main", jsconfig.PolicyService, 7331, 7331},
		{"background-jobs-worker", jsconfig.PolicyCompanion, 0, 0}, {"web", jsconfig.PolicyProxied, 14500, 14599}}
	if len(plan.Processes) != len(want) {
		t.Fatalf("%d processes", len(plan.Processes))
	}
	for i, w := range want {
		p := plan.Processes[i]
		if p.ID != w.id || p.Policy != w.policy {
			t.Errorf("process %d: %s %s, want %s %s", i, p.ID, p.Policy, w.id, w.policy)
		}
		if w.from != 0 && (p.Port == nil || p.Port.From != w.from || p.Port.Last() != w.to) {
			t.Errorf("%s port %+v", p.ID, p.Port)
		}
	}
	if w := plan.Process("background-jobs-worker"); w.GracefulStop.Ms != 60000 || w.Port != nil {
		t.Errorf("worker graceful stop %+v", w.GracefulStop)
	}
	if h := plan.Process("web").Health; h == nil || h.IntervalMs != 500 || h.Path != "/ping" || h.TimeoutMs != 30000 {
		t.Errorf("web health %+v", h)
	}
	rendered := renderAll(t, plan)
	if got := rendered["web"].Command; got != "npx velocious server --host 127.0.0.1 --port 14500" {
		t.Errorf("web command %q", got)
	}
	for id, r := range rendered {
		env := envMap(r.Env)
		if r.Dir != "/srv/app/releases/r1/backend" || env["NODE_ENV"] != "production" || env["VELOCIOUS_ENV"] != "production" ||
			env["VELOCIOUS_BEACON_PORT"] != "7330" || env["VELOCIOUS_BACKGROUND_JOBS_PORT"] != "7331" {
			t.Errorf("%s: dir %q env %v", id, r.Dir, env)
		}
	}
	if c := rendered["background-jobs-worker"].Command; !strings.Contains(c, "connect(7330,") || !strings.Contains(c, "connect(7331,") {
		t.Errorf("the worker waits for beacon and background-jobs-main: %q", c)
	}
}
