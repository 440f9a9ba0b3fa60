package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge/jsconfig"
)

func testContext() *TemplateContext {
	port := 18000
	env := map[string]string{"HOME": "/home/app", "EMPTY": "", "a-b": "dash"}
	return &TemplateContext{
		Application:  "shop",
		ReleaseID:    "20261125200819788",
		ReleasePath:  "releases/v1",
		Revision:     "abc123",
		ProcessID:    "worker",
		ReplicaIndex: 1,
		ReplicaCount: 3,
		Port:         &port,
		Ports:        []PortAssignment{{"beacon", 7330}, {"web", 18000}},
		Proxy:        jsconfig.Proxy{Host: "0.0.0.0", Port: 0, UpstreamHost: "127.0.0.1"},
		LookupEnv:    func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	}
}

func TestRender(t *testing.T) {
	c := testContext()
	for _, tc := range []struct{ in, want string }{
		{"--port {{port}}", "--port 18000"},
		{"{{ port }}|{{\tport\n}}", "18000|18000"},
		{"{{application}} {{releaseId}} {{releasePath}} {{revision}} {{processId}}", "shop 20261125200819788 releases/v1 abc123 worker"},
		{"{{replicaIndex}}/{{replicaCount}}", "1/3"},
		{"{{ports.beacon}},{{ports.web}}", "7330,18000"},
		{"{{proxy.host}}:{{proxy.port}} via {{proxy.upstreamHost}}", "0.0.0.0:0 via 127.0.0.1"},
		{"{{env.HOME}}[{{env.EMPTY}}]{{env.a-b}}", "/home/app[]dash"},
		{"{{ports}} {{env}} {{proxy}}", "[object Object] [object Object] [object Object]"},
		{"{{}} {{ }} {{port} {{po rt}} {{$port}} {{ports.web#0}}", "{{}} {{ }} {{port} {{po rt}} {{$port}} {{ports.web#0}}"},
		{"{{{port}}}", "{18000}"},
		{"{{ {{port}} }}", "{{ 18000 }}"},
		{`\{{port}}`, `\18000`},
		{"no placeholders", "no placeholders"},
	} {
		got, err := c.Render(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Render(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestRenderIsSinglePass(t *testing.T) {
	c := testContext()
	c.ReleasePath = "/srv/{{port}}"
	got, err := c.Render("{{releasePath}}")
	if err != nil || got != "/srv/{{port}}" {
		t.Fatalf("substituted text was scanned again: %q %v", got, err)
	}
}

func TestRenderMissing(t *testing.T) {
	c := testContext()
	for _, in := range []string{"{{ nope }}", "{{Port}}", "{{port.x}}", "{{env.HOME.length}}", "{{.port}}", "{{port.}}", "{{..}}",
		"{{toString}}", "{{env.constructor}}", "{{ports.nope}}", "{{proxy.drainTimeoutMs}}", "{{env.NOT_SET_ANYWHERE}}", "{{application.length}}"} {
		_, err := c.Render("a " + in + " {{ missing_too }}")
		var mv *MissingValueError
		if !errors.As(err, &mv) || err.Error() != "Missing template value for "+in {
			t.Errorf("Render(%q): %v", in, err)
		}
	}
	c.Port = nil
	if _, err := c.Render("{{port}}"); err == nil || err.Error() != "Missing template value for {{port}}" {
		t.Errorf("a process without a port has no {{port}}: %v", err)
	}
}

func TestPortVariable(t *testing.T) {
	for id, want := range map[string]string{
		"web": "ROLLBRIDGE_WEB_PORT", "background-jobs-main": "ROLLBRIDGE_BACKGROUND_JOBS_MAIN_PORT",
		"side-car.v2": "ROLLBRIDGE_SIDE_CAR_V2_PORT", "a--b": "ROLLBRIDGE_A_B_PORT",
		"-web-": "ROLLBRIDGE__WEB__PORT", "café": "ROLLBRIDGE_CAF__PORT",
	} {
		if got := PortVariable(id); got != want {
			t.Errorf("PortVariable(%q) = %q, want %q", id, got, want)
		}
	}
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := m[k]; dup {
			m[k] = "DUPLICATE"
			continue
		}
		m[k] = v
	}
	return m
}

func TestRenderProcessEnvironment(t *testing.T) {
	c := testContext()
	c.ProcessID = "web"
	c.Ports = append(c.Ports, PortAssignment{"a-b", 1}, PortAssignment{"a_b", 2})
	cwd := "backend"
	p := &jsconfig.Process{
		ID: "web", Command: "serve --port {{port}}", Cwd: &cwd,
		Env: []jsconfig.EnvVar{{Name: "APP", Value: "{{releaseId}}-{{port}}-{{ports.web}}"}, {Name: "ROLLBRIDGE_RELEASE_ID", Value: "x-{{releaseId}}"}, {Name: "PATH", Value: "/bin"}},
	}
	r, err := RenderProcess(p, c, []string{"PATH=/usr/bin", "ROLLBRIDGE_PORT=stale", "KEEP=1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Command != "serve --port 18000" || r.Cwd != "backend" || r.Dir != "releases/v1/backend" {
		t.Fatalf("command %q cwd %q dir %q", r.Command, r.Cwd, r.Dir)
	}
	env := envMap(r.Env)
	for k, want := range map[string]string{
		"KEEP": "1", "PATH": "/bin", "ROLLBRIDGE_PORT": "18000", "ROLLBRIDGE_APPLICATION": "shop",
		"ROLLBRIDGE_PROCESS_ID": "web", "ROLLBRIDGE_RELEASE_ID": "x-20261125200819788", "ROLLBRIDGE_RELEASE_PATH": "releases/v1",
		"ROLLBRIDGE_REVISION": "abc123", "ROLLBRIDGE_REPLICA_INDEX": "1", "ROLLBRIDGE_REPLICA_COUNT": "3",
		"ROLLBRIDGE_BEACON_PORT": "7330", "ROLLBRIDGE_WEB_PORT": "18000", "ROLLBRIDGE_A_B_PORT": "2", "APP": "20261125200819788-18000-18000",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	if hooks := envMap(WithPID(r.Env, "4242")); hooks["ROLLBRIDGE_PID"] != "4242" || hooks["APP"] != env["APP"] {
		t.Errorf("hook env: %v", hooks)
	}

	c.Port = nil
	abs := "/opt/app"
	p = &jsconfig.Process{ID: "job", Command: "run", Cwd: &abs}
	r, err = RenderProcess(p, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := envMap(r.Env)["ROLLBRIDGE_PORT"]; ok || r.Dir != "/opt/app" {
		t.Fatalf("ROLLBRIDGE_PORT is only set for a process with a port; dir %q", r.Dir)
	}
	r, _ = RenderProcess(&jsconfig.Process{ID: "job", Command: "run"}, c, nil)
	if r.Dir != "releases/v1" || r.Cwd != "releases/v1" {
		t.Fatalf("no cwd runs in the release path: %+v", r)
	}
	empty := "{{env.EMPTY}}"
	r, _ = RenderProcess(&jsconfig.Process{ID: "job", Command: "run", Cwd: &empty}, c, nil)
	if r.Dir != "releases/v1" || r.Cwd != "releases/v1" {
		t.Fatalf("a cwd that renders empty runs in the release path: %+v", r)
	}
	if _, err := RenderProcess(&jsconfig.Process{ID: "job", Command: "run {{nope}}", Env: []jsconfig.EnvVar{{Name: "A", Value: "{{ alsoNope }}"}}}, c, nil); err == nil || err.Error() != "Missing template value for {{nope}}" {
		t.Fatalf("first missing placeholder: %v", err)
	}
}

// RenderShown keeps values from the environment as placeholders (and
// fails like Render on a missing one); everything else renders.
func TestRenderShown(t *testing.T) {
	c := testContext()
	for _, tc := range []struct{ in, want string }{
		{"serve --token {{ env.HOME }} --port {{port}}", "serve --token {{env.HOME}} --port 18000"},
		{"{{env.EMPTY}}|{{env.a-b}}|{{env}}", "{{env.EMPTY}}|{{env.a-b}}|[object Object]"},
		{"{{releaseId}}", "20261125200819788"},
	} {
		if got, err := c.RenderShown(tc.in); err != nil || got != tc.want {
			t.Errorf("RenderShown(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := c.RenderShown("{{env.NOPE}}"); err == nil || err.Error() != "Missing template value for {{env.NOPE}}" {
		t.Errorf("missing: %v", err)
	}
	cwd := "{{env.HOME}}/app"
	r, err := RenderProcess(&jsconfig.Process{Command: "run {{env.HOME}}", Cwd: &cwd}, c, nil)
	if err != nil || r.Command != "run /home/app" || r.ShownCommand != "run {{env.HOME}}" || r.Dir != "/home/app/app" || r.Cwd != "{{env.HOME}}/app" {
		t.Errorf("RenderProcess: %+v %v", r, err)
	}
}
