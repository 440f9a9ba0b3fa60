package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// readTrusted refuses what another user could have written or swapped
// in, and reads what root or the reading user owns alone.
func TestReadTrustedRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{}`), 0o600)
	groupWritable := filepath.Join(dir, "group.json")
	os.WriteFile(groupWritable, []byte(`{}`), 0o600)
	os.Chmod(groupWritable, 0o620)
	link := filepath.Join(dir, "link.json")
	os.Symlink(good, link)
	fifo := filepath.Join(dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir.json")
	os.Mkdir(sub, 0o700)
	for path, reason := range map[string]string{
		groupWritable: "it is writable by group or others (mode 0620)",
		link:          "it is a symbolic link",
		fifo:          "it is not a regular file",
		sub:           "it is not a regular file",
	} {
		_, _, err := readTrusted(path)
		var untrusted *UntrustedStateError
		if !errors.As(err, &untrusted) || untrusted.Path != path || untrusted.Reason != reason {
			t.Errorf("%s: %v, want %q", filepath.Base(path), err, reason)
		}
	}
	if os.Geteuid() == 0 {
		foreign := filepath.Join(dir, "foreign.json")
		os.WriteFile(foreign, []byte(`{}`), 0o600)
		os.Chown(foreign, 65534, 65534)
		if _, _, err := readTrusted(foreign); err == nil || !strings.Contains(err.Error(), "it is owned by uid 65534") {
			t.Errorf("foreign: %v", err)
		}
	}
	if data, mtime, err := readTrusted(good); err != nil || string(data) != "{}" || mtime.IsZero() {
		t.Fatalf("good: %q %v %v", data, mtime, err)
	}
	if data, _, err := readTrusted(filepath.Join(dir, "none.json")); data != nil || err != nil {
		t.Fatalf("missing: %q %v", data, err)
	}
}
