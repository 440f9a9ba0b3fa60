package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A relative --release-path means the caller's directory for deploy and
// doctor alike, not the daemon's.
func TestRelativeReleasePathIsTheCallers(t *testing.T) {
	d := startDaemon(t, `processes: [`+webProcess+`]`)
	caller := t.TempDir()
	for _, id := range []string{"v1", "v2"} {
		if err := os.MkdirAll(filepath.Join(caller, "releases", id), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The daemon runs in d.dir, where releases/v1 does not exist.
	r := rollbridge(t, caller, "deploy", "-c", d.config, "--release-path", "releases/v1", "--release-id", "v1")
	if r.code != 0 {
		t.Fatalf("deploy with a relative path: %+v", r)
	}
	want := filepath.Join(caller, "releases", "v1")
	if got := release(d.status(), "v1")["releasePath"]; got != want {
		t.Fatalf("releasePath %v, want %s", got, want)
	}
	if _, body := d.get("/release"); body != "v1" {
		t.Fatalf("serving %q", body)
	}
	r = rollbridge(t, caller, "doctor", "-c", d.config, "--release-path", "releases/v2")
	if r.code != 0 || !strings.Contains(r.stdout, "✓ release path: "+filepath.Join(caller, "releases", "v2")+" exists\n") ||
		!strings.Contains(r.stdout, "✓ process working directories: all 1 process working directory exists\n") {
		t.Fatalf("doctor with a relative path: %+v", r)
	}
	r = rollbridge(t, caller, "deploy", "-c", d.config, "--release-path", "releases/v2", "--release-id", "v2")
	if r.code != 0 || release(d.status(), "v2")["releasePath"] != filepath.Join(caller, "releases", "v2") {
		t.Fatalf("deploy of what doctor checked: %+v", r)
	}
}
