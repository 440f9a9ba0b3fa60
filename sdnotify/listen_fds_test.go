package sdnotify_test

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge/sdnotify"
	"github.com/rollbridge/rollbridge/sdnotify/sdtest"
)

// Variables for another process (a parent exec'd us without clearing
// them) give nothing, touch no descriptor, and are still unset.
func TestListenIgnoresAnotherPID(t *testing.T) {
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()+1))
	t.Setenv("LISTEN_FDS", "2")
	t.Setenv("LISTEN_FDNAMES", "proxy:control")
	t.Setenv("LISTEN_PIDFDID", "12345")
	files, err := sdnotify.Listen()
	if err != nil || files != nil {
		t.Fatalf("Listen = %v, %v; want nothing", files, err)
	}
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q still set after Listen", k, v)
		}
	}
}

func TestListenWithoutVariables(t *testing.T) {
	t.Setenv("LISTEN_PID", "")
	os.Unsetenv("LISTEN_PID")
	files, err := sdnotify.Listen()
	if err != nil || files != nil {
		t.Fatalf("Listen = %v, %v; want nothing", files, err)
	}
}

func TestListenRejectsBadPID(t *testing.T) {
	t.Setenv("LISTEN_PID", "12abc")
	t.Setenv("LISTEN_FDS", "1")
	if _, err := sdnotify.Listen(); err == nil || !strings.Contains(err.Error(), "LISTEN_PID") {
		t.Fatalf("got %v, want an error naming LISTEN_PID", err)
	}
	if _, ok := os.LookupEnv("LISTEN_FDS"); ok {
		t.Fatal("LISTEN_FDS still set after a failed Listen")
	}
}

// runReport starts the test binary as a "report" child through the
// harness with two stored pipes, lets edit change the environment, and
// returns what Listen gave the child.
func runReport(t *testing.T, edit func(env []string) []string) listenReport {
	t.Helper()
	m, err := sdtest.NewManager(t.TempDir(), 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	t.Setenv("NOTIFY_SOCKET", m.Socket())
	r1, _ := pipe(t)
	r2, _ := pipe(t)
	if err := sdnotify.Store("one", r1); err != nil {
		t.Fatal(err)
	}
	if err := sdnotify.Store("two", r2); err != nil {
		t.Fatal(err)
	}
	syncManager(t, m)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := m.Command(exe)
	cmd.Env = edit(append(cmd.Env, childVars("report")...))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
	if err != nil {
		t.Fatalf("report child: %v (stderr: %s)", err, stderr.String())
	}
	var rep listenReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("report %q: %v", out, err)
	}
	if len(rep.Env) != 0 {
		t.Errorf("LISTEN_ variables left after Listen: %q", rep.Env)
	}
	return rep
}

func setEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	if value != "-" {
		out = append(out, key+"="+value)
	}
	return out
}

func TestListenNames(t *testing.T) {
	rep := runReport(t, func(env []string) []string { return env })
	if rep.Err != "" || rep.Names["one"] != 1 || rep.Names["two"] != 1 || len(rep.Names) != 2 {
		t.Fatalf("got %+v, want one and two", rep)
	}
}

func TestListenWithoutNamesCallsThemUnknown(t *testing.T) {
	rep := runReport(t, func(env []string) []string { return setEnv(env, "LISTEN_FDNAMES", "-") })
	if rep.Err != "" || rep.Names["unknown"] != 2 || len(rep.Names) != 1 {
		t.Fatalf("got %+v, want two files named unknown", rep)
	}
}

func TestListenNameCountMismatchIsAnError(t *testing.T) {
	rep := runReport(t, func(env []string) []string { return setEnv(env, "LISTEN_FDNAMES", "one") })
	if !strings.Contains(rep.Err, "LISTEN_FDNAMES names 1 descriptors, LISTEN_FDS passes 2") || len(rep.Names) != 0 {
		t.Fatalf("got %+v, want the mismatch error and no files", rep)
	}
}

func TestListenBadCountIsAnError(t *testing.T) {
	for _, count := range []string{"0", "-1", "two"} {
		rep := runReport(t, func(env []string) []string { return setEnv(env, "LISTEN_FDS", count) })
		if !strings.Contains(rep.Err, "is not a positive descriptor count") || len(rep.Names) != 0 {
			t.Errorf("LISTEN_FDS=%s: got %+v", count, rep)
		}
	}
}

// A count beyond the descriptors passed reaches one that is not open.
func TestListenCountBeyondOpenDescriptorsIsAnError(t *testing.T) {
	rep := runReport(t, func(env []string) []string {
		return setEnv(setEnv(env, "LISTEN_FDS", "5000"), "LISTEN_FDNAMES", "-")
	})
	if !strings.Contains(rep.Err, "bad file descriptor") || len(rep.Names) != 0 {
		t.Fatalf("got %+v, want EBADF", rep)
	}
}
