package engine

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// The daemon removes its pid file only while the file is still its own:
// every other thing at the path, or behind it, stays untouched.
func TestRemoveOwnPIDFile(t *testing.T) {
	const pid = 4242
	own := strconv.Itoa(pid) + "\n"
	type testCase struct {
		name    string
		prepare func(t *testing.T, path string) (keep []string) // files that must survive
		removed bool
	}
	cases := []testCase{
		{"its own pid", func(t *testing.T, path string) []string { writeTestFile(t, path, own); return nil }, true},
		{"its own pid without a newline", func(t *testing.T, path string) []string { writeTestFile(t, path, "4242"); return nil }, true},
		{"missing", func(t *testing.T, path string) []string { return nil }, false},
		{"another pid", func(t *testing.T, path string) []string { writeTestFile(t, path, "4243\n"); return []string{path} }, false},
		{"a longer number", func(t *testing.T, path string) []string { writeTestFile(t, path, "42420\n"); return []string{path} }, false},
		{"the pid followed by more", func(t *testing.T, path string) []string {
			writeTestFile(t, path, own+"0123456789012345678901234567890123456789\n")
			return []string{path}
		}, false},
		{"a link to a file with its pid", func(t *testing.T, path string) []string {
			target := path + ".target"
			writeTestFile(t, target, own)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
			return []string{path, target}
		}, false},
		{"a second hard link", func(t *testing.T, path string) []string {
			writeTestFile(t, path, own)
			if err := os.Link(path, path+".other"); err != nil {
				t.Fatal(err)
			}
			return []string{path, path + ".other"}
		}, false},
		{"a named pipe", func(t *testing.T, path string) []string {
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{path}
		}, false},
		{"a directory", func(t *testing.T, path string) []string {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			return []string{path}
		}, false},
	}
	if os.Geteuid() == 0 { // only root can give a file away
		cases = append(cases, testCase{"another user's file with its pid", func(t *testing.T, path string) []string {
			writeTestFile(t, path, own)
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return []string{path}
		}, false})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "daemon.pid")
			keep := tc.prepare(t, path)
			if got := removeOwnPIDFile(path, pid); got != tc.removed {
				t.Fatalf("removed = %v, want %v", got, tc.removed)
			}
			if _, err := os.Lstat(path); tc.removed && !os.IsNotExist(err) {
				t.Errorf("%s is still there (%v)", path, err)
			}
			for _, p := range keep {
				if _, err := os.Lstat(p); err != nil {
					t.Errorf("%s was removed: %v", p, err)
				}
			}
		})
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
