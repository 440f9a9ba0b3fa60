package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
