package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binary is the rollbridge executable built for this test run; fixture
// is the test app of testdata/fixture.
var binary, fixture string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rollbridge-cli-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rollbridge")
	fixture = filepath.Join(dir, "fixture")
	for _, b := range [][]string{{"-o", binary, "."}, {"-o", fixture, "../../testdata/fixture"}} {
		build := exec.Command("go", append([]string{"build"}, b...)...)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			panic("building " + b[1] + ": " + err.Error())
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// rollbridge runs the built binary in dir with args.
func rollbridge(t testing.TB, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	return runToEnd(t, cmd)
}

// runToEnd runs cmd and returns its output and exit status.
func runToEnd(t testing.TB, cmd *exec.Cmd) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errOut.String(), code}
}

func TestVersionAndHelp(t *testing.T) {
	dir := t.TempDir()
	if r := rollbridge(t, dir, "--version"); r.stdout != "rollbridge 0.2.0\n" || r.code != 0 || r.stderr != "" {
		t.Errorf("--version: %+v", r)
	}
	if r := rollbridge(t, dir, "-V"); r.stdout != "rollbridge 0.2.0\n" || r.code != 0 {
		t.Errorf("-V: %+v", r)
	}
	bare := rollbridge(t, dir)
	if bare.code != 1 || bare.stdout != "" || !strings.HasPrefix(bare.stderr, "Zero-downtime process supervisor and local traffic switcher.") {
		t.Errorf("bare invocation prints help on stderr and fails: %+v", bare)
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := rollbridge(t, dir, args...)
		if r.code != 0 || r.stderr != "" || r.stdout != bare.stderr {
			t.Errorf("%v: %+v", args, r)
		}
	}
	// Commands are listed in the reference's order, not alphabetically.
	if i, j := strings.Index(bare.stderr, "  validate "), strings.Index(bare.stderr, "  completion "); i < 0 || j < i {
		t.Errorf("command order in help:\n%s", bare.stderr)
	}
	if strings.Contains(bare.stderr, "__complete") || strings.Contains(bare.stderr, "  version ") {
		t.Errorf("help lists hidden or extra commands:\n%s", bare.stderr)
	}
	for _, args := range [][]string{{"validate", "--help"}, {"help", "validate"}, {"validate", "-h", "--bogus"}} {
		r := rollbridge(t, dir, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Parse the config and report all errors without starting the daemon.") ||
			!strings.Contains(r.stdout, "-c, --config <path>  Config file path (defaults to $ROLLBRIDGE_CONFIG, then rollbridge.js)") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	// An unknown topic is an unknown command, with commander's suggestion.
	if r := rollbridge(t, dir, "help", "nope"); r.code != 1 || r.stdout != "" || r.stderr != "error: unknown command 'nope'\n\n"+bare.stderr {
		t.Errorf("help for an unknown command: %+v", r)
	}
	if r := rollbridge(t, dir, "help", "stauts"); r.code != 1 || r.stdout != "" || r.stderr != "error: unknown command 'stauts'\n(Did you mean status?)\n\n"+bare.stderr {
		t.Errorf("help for a mistyped command: %+v", r)
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args  []string
		first string
	}{
		{[]string{"valdate"}, "error: unknown command 'valdate'\n(Did you mean validate?)\n\n"},
		{[]string{"val"}, "error: unknown command 'val'\n\n"},
		{[]string{"validate", "--jsn"}, "error: unknown option '--jsn'\n(Did you mean --json?)\n\n"},
		{[]string{"validate", "-c", "-h", "--bogus"}, "error: unknown option '--bogus'\n\n"},
		{[]string{"xyzzy"}, "error: unknown command 'xyzzy'\n\n"},
		{[]string{"validate", "--bogus"}, "error: unknown option '--bogus'\n\n"},
		{[]string{"validate", "-x"}, "error: unknown option '-x'\n\n"},
		{[]string{"validate", "-c"}, "error: option '-c, --config <path>' argument missing\n\n"},
		{[]string{"validate", "--config"}, "error: option '-c, --config <path>' argument missing\n\n"},
		{[]string{"-c", "x.js", "nope"}, "error: unknown option '-c'\n\n"},
		{[]string{"--force", "status"}, "error: unknown option '--force'\n\n"},
		{[]string{"completion"}, "error: missing required argument 'shell'\n\n"},
	} {
		r := rollbridge(t, dir, tc.args...)
		if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, tc.first) || !strings.Contains(r.stderr, "Usage:") {
			t.Errorf("%v: %+v", tc.args, r)
		}
	}
}

func TestValidateDefaultLookup(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	msg := "No config file found in " + dir + ". Pass --config <path> or add one of: rollbridge.js."
	if r := rollbridge(t, dir, "validate"); r.code != 1 || r.stdout != "" || r.stderr != msg+"\n" {
		t.Errorf("no config: %+v", r)
	}
	want := `{
  "config": null,
  "issues": [
    {
      "fix": "Pass --config or add a rollbridge.js.",
      "message": "` + msg + `"
    }
  ],
  "path": null,
  "valid": false
}
`
	if r := rollbridge(t, dir, "validate", "--json"); r.code != 1 || r.stdout != want || r.stderr != "" {
		t.Errorf("no config --json: %+v", r)
	}
	config := `export default {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};`
	if err := os.WriteFile(filepath.Join(dir, "rollbridge.js"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	app := filepath.Base(dir)
	if r := rollbridge(t, dir, "validate"); r.code != 0 || r.stdout != dir+"/rollbridge.js is valid: 1 process, proxy on 127.0.0.1:8182.\n" {
		t.Errorf("default config: %+v", r)
	}
	if r := rollbridge(t, dir, "validate", "--json=true"); r.code != 0 || !strings.Contains(r.stdout, `"application": "`+app+`"`) {
		t.Errorf("default config --json: %+v", r)
	}
	// A relative --config is printed as typed.
	if r := rollbridge(t, dir, "validate", "--config=./sub/../rollbridge.js"); r.code != 0 || !strings.HasPrefix(r.stdout, "./sub/../rollbridge.js is valid") {
		t.Errorf("relative --config: %+v", r)
	}
	// The last -c wins; a value may begin with "-".
	if r := rollbridge(t, dir, "validate", "-c", "nope.js", "-c./rollbridge.js"); r.code != 0 {
		t.Errorf("repeated -c: %+v", r)
	}
	if r := rollbridge(t, dir, "validate", "-c", "--json"); r.code != 1 || !strings.Contains(r.stderr, "Found 1 configuration issue in --json:") {
		t.Errorf("-c --json takes --json as the path: %+v", r)
	}
}

// --daemon-runtime-path is accepted and ignored; its help must say so
// rather than promise a directory of runtime snapshots.
func TestDaemonRuntimePathHelpSaysIgnored(t *testing.T) {
	dir := t.TempDir()
	for _, command := range []string{"ensure-daemon", "deploy"} {
		r := rollbridge(t, dir, command, "--help")
		if r.code != 0 {
			t.Fatalf("%s --help: %+v", command, r)
		}
		var line string
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.Contains(l, "--daemon-runtime-path <path>") {
				line = l
			}
		}
		if !strings.HasSuffix(line, "Ignored; accepted for compatibility with the Node.js rollbridge") {
			t.Errorf("%s --help, the --daemon-runtime-path line: %q", command, line)
		}
	}
}
