package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The example units keep their hardening and carry none of the options
// that would break a standard layout (docs/deploy-recipes.md §6.4); where
// systemd-analyze is installed (.ci/run installs it), they also load
// (verify) and stay below an exposure of 4.0 (security). make test needs
// only Go, so a machine without systemd gets the checks of the file alone.
func TestExampleUnitsAreHardened(t *testing.T) {
	_, lookErr := exec.LookPath("systemd-analyze")
	if lookErr != nil {
		t.Log("systemd-analyze is not installed: checking the units' options only (Debian: apt-get install systemd)")
	}
	// The hardening the exposure figure rests on: dropping one needs a
	// decision too.
	hardening := []string{
		"NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "ProtectSystem=full", "ProtectKernelTunables=yes",
		"ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes", "ProtectHostname=yes",
		"ProtectProc=invisible", "PrivateMounts=yes", "RestrictSUIDSGID=yes", "RestrictRealtime=yes",
		"RestrictAddressFamilies=", "LockPersonality=yes", "SystemCallArchitectures=native", "SystemCallFilter=~",
	}
	// Options that a standard layout notices, each with the reason it is
	// left out; adding one needs a decision, not a copy from a checklist.
	breaking := map[string]string{
		"PrivateTmp":               "hides a control socket in /tmp from the CLI",
		"ProtectHome":              "releases, rbenv/nvm runtimes and caches under /home",
		"ProtectSystem=strict":     "needs ReadWritePaths= for every directory an app writes",
		"MemoryDenyWriteExecute":   "JIT compilers: V8, the JVM",
		"RemoveIPC":                "removes the shared memory of the other generation at a takeover",
		"PrivateDevices":           "GPUs and other devices",
		"ProtectClock":             "implies a device allow-list",
		"DeviceAllow":              "a device allow-list",
		"RestrictNamespaces":       "Chromium's sandbox, bubblewrap",
		"PrivateUsers":             "files of other users",
		"UMask":                    "files nginx serves",
		"ProcSubset":               "/proc/meminfo, /proc/cpuinfo",
		"PrivateNetwork":           "the network",
		"IPAddressDeny":            "the network",
		"SystemCallFilter=@":       "an allow-list refuses what some app needs",
		"SystemCallFilter=~@mount": "user namespaces of sandboxes",
	}
	dir := t.TempDir()
	for _, unit := range []string{"rollbridge.service", "rollbridge@.service"} {
		t.Run(unit, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("..", "..", "examples", unit))
			if err != nil {
				t.Fatal(err)
			}
			for option, why := range breaking {
				if regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(option)).Match(src) {
					t.Errorf("%s sets %s, which breaks a standard layout: %s", unit, option, why)
				}
			}
			for _, option := range hardening {
				if !regexp.MustCompile(`(?m)^` + option).Match(src) {
					t.Errorf("%s lost %s", unit, strings.TrimSuffix(option, "\\n"))
				}
			}
			if lookErr != nil {
				return
			}
			// verify wants the binary ExecStart= names to exist.
			path := filepath.Join(dir, unit)
			if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(src), "/usr/local/bin/rollbridge", binary)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
				t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
			}
			out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=40", path).CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if err != nil {
				t.Fatalf("exposure above 4.0: %v\n%s", err, lines[len(lines)-1])
			}
			t.Log(lines[len(lines)-1])
		})
	}
}

// The example units let the apps outlive a daemon crash and give the
// restarted daemon back its sockets and output pipes
// (docs/deploy-recipes.md §6): KillMode=process, a file descriptor store, a
// quick restart without a start limit, and an app killed by the OOM killer
// left to the daemon's restart policy. Each setting is looked up in the
// section systemd reads it from; StartLimitIntervalSec= under [Service] is
// not the same thing.
func TestExampleUnitsSurviveADaemonCrash(t *testing.T) {
	want := []struct{ section, key, value, why string }{
		{"Unit", "StartLimitIntervalSec", "0", "a crash loop would make the unit failed, which empties the fd store"},
		{"Service", "KillMode", "process", "mixed or control-group kill every app when the daemon dies"},
		{"Service", "Restart", "on-failure", "a crashed daemon must come back"},
		{"Service", "RestartSec", "1", "connections wait in the listen backlog while the daemon is down"},
		{"Service", "OOMPolicy", "continue", "the default (stop) stops the whole unit when the OOM killer ends one app"},
	}
	for _, unit := range []string{"rollbridge.service", "rollbridge@.service"} {
		t.Run(unit, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("..", "..", "examples", unit))
			if err != nil {
				t.Fatal(err)
			}
			settings := unitSettings(string(src))
			for _, w := range want {
				got := settings[w.section+"."+w.key]
				if len(got) != 1 || got[0] != w.value {
					t.Errorf("%s: [%s] %s=%q, want exactly %s=%s: %s", unit, w.section, w.key, got, w.key, w.value, w.why)
				}
			}
			// 3 listeners, plus stdout and stderr of one process in two
			// releases: below that the store cannot hold even the smallest app.
			store := settings["Service.FileDescriptorStoreMax"]
			if n, err := strconv.Atoi(strings.Join(store, "")); len(store) != 1 || err != nil || n < 7 {
				t.Errorf("%s: [Service] FileDescriptorStoreMax=%q, want one number of at least 7 (3 + 4 × release process replicas + 2 × services and singletons)", unit, store)
			}
		})
	}
}

// Every unit excerpt in the docs sets KillMode= the way the example units
// do, so that nobody copies an excerpt that kills the apps at a daemon crash.
func TestUnitExcerptsInDocsUseKillModeProcess(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join("..", "..", "README.md"))
	block := regexp.MustCompile("(?s)```ini\n(.*?)```")
	excerpts := 0
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllStringSubmatch(string(src), -1) {
			for _, mode := range unitSettings(m[1])["Service.KillMode"] {
				excerpts++
				if mode != "process" {
					t.Errorf("%s: a unit excerpt sets KillMode=%s; the example units use KillMode=process (docs/deploy-recipes.md §6)", filepath.Base(file), mode)
				}
			}
		}
	}
	if excerpts == 0 {
		t.Fatal("no unit excerpt in the docs sets KillMode=: the check looked at nothing")
	}
}

// unitSettings reads a systemd unit (or an excerpt of one) into
// "Section.Key" → values in file order. Comments and continuation lines are
// skipped: the settings checked here are single-line ones. An excerpt
// without a section header counts as [Service].
func unitSettings(src string) map[string][]string {
	settings := map[string][]string{}
	section := "Service"
	continued := false
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		wasContinued := continued
		continued = strings.HasSuffix(line, "\\")
		switch {
		case wasContinued, line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.TrimSuffix(strings.TrimPrefix(line, "["), "]")
		default:
			if key, value, ok := strings.Cut(line, "="); ok {
				k := section + "." + strings.TrimSpace(key)
				settings[k] = append(settings[k], strings.TrimSpace(value))
			}
		}
	}
	return settings
}
