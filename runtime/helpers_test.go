package runtime

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fixture is the test program of testdata/fixture, built once per run.
var fixture string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rollbridge-runtime-test")
	if err != nil {
		panic(err)
	}
	fixture = filepath.Join(dir, "fixture")
	build := exec.Command("go", "build", "-o", fixture, "../testdata/fixture")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building the fixture: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// recorder collects a process's events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Message)
	}
	return out
}

// find returns the data of the n-th (0-based) event with message, or nil.
func (r *recorder) find(message string, n int) []Field {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Message == message {
			if n == 0 {
				return e.Data
			}
			n--
		}
	}
	return nil
}

func (r *recorder) count(message string) int {
	n := 0
	for _, m := range r.messages() {
		if m == message {
			n++
		}
	}
	return n
}

func dataString(fields []Field) string {
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%v", f.Key, f.Value)
	}
	return b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func baseSpec(t *testing.T, command string) Spec {
	return Spec{
		ID: "proc", Command: command, Dir: t.TempDir(), Cwd: "", Env: os.Environ(),
		StopSignal: syscall.SIGTERM, GracefulStop: 2 * time.Second, OutputLines: 50,
		Restart: RestartPolicy{Delay: time.Second, BackoffFactor: 1},
	}
}

// newProcess creates a process whose group is killed when the test ends,
// whatever happened, so no test leaks processes.
func newProcess(t *testing.T, spec Spec, clock Clock) (*Process, *recorder) {
	t.Helper()
	rec := &recorder{}
	p := New(spec, Options{Clock: clock, OnEvent: rec.add})
	failIfGroupOutlives(t, p)
	return p, rec
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	st, ok := parseStat(data)
	return ok && st.state != 'Z' && st.state != 'X'
}

func readPids(t *testing.T, file string) []int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, n)
	}
	return pids
}

func fileLines(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(bytes.TrimSpace(data)), "\n", "|"))
}

// failIfGroupOutlives kills, and reports, the process group of p's last
// spawn when it is still alive at the end of the test.
func failIfGroupOutlives(t *testing.T, p *Process) {
	t.Cleanup(func() {
		p.mu.Lock()
		pgid := p.lastPid
		p.mu.Unlock()
		if pgid > 0 && groupAlive(pgid) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			t.Errorf("process group %d was still alive at the end of the test", pgid)
		}
	})
}
