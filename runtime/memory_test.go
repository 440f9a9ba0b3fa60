package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// memorySpec runs the fixture holding mb MiB; the pid file appears once the
// memory is touched.
func memorySpec(t *testing.T, mb int, policy MemoryPolicy) (Spec, string) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	spec := baseSpec(t, "exec "+fixture+" -alloc-mb "+itoa(mb)+" -pid-file "+pidFile)
	spec.ID = "hog"
	spec.Memory = &policy
	return spec, pidFile
}

func waitForFile(t *testing.T, path string) {
	t.Helper()
	waitFor(t, path, 10*time.Second, func() bool { _, err := os.Stat(path); return err == nil })
}

func TestMemoryWarningAndChildren(t *testing.T) {
	clock := NewFakeClock(epoch)
	spec, pidFile := memorySpec(t, 48, MemoryPolicy{LimitBytes: 1 << 40, WarnBytes: 16 << 20, CheckInterval: time.Second})
	p, rec := newProcess(t, spec, clock)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitForFile(t, pidFile)
	for range 3 {
		clock.Advance(time.Second)
	}
	if n := rec.count("memory warning"); n != 1 {
		t.Fatalf("memory warning logged %d times, want once", n)
	}
	s := p.Status()
	if s.RSSBytes == nil || *s.RSSBytes < 48<<20 || len(s.Children) != 1 || s.Children[0].PID != s.PID || s.Children[0].Command != "fixture" {
		t.Fatalf("memory status: rss %v children %+v", s.RSSBytes, s.Children)
	}
	data := rec.find("memory warning", 0)
	if data[0].Value != "hog" || data[1].Key != "rssBytes" || data[2].Value != float64(16<<20) {
		t.Fatalf("warning data %s", dataString(data))
	}
	p.Stop()
	if s := p.Status(); s.RSSBytes != nil || len(s.Children) != 0 {
		t.Fatalf("rssBytes and children are cleared on exit: %+v", s)
	}
}

func TestMemoryLimitRestartsGracefully(t *testing.T) {
	clock := NewFakeClock(epoch)
	spec, pidFile := memorySpec(t, 64, MemoryPolicy{LimitBytes: 32 << 20, CheckInterval: 500 * time.Millisecond})
	p, rec := newProcess(t, spec, clock)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitForFile(t, pidFile)
	first := p.PID()
	if err := os.Remove(pidFile); err != nil {
		t.Fatal(err)
	}
	clock.Advance(500 * time.Millisecond)
	waitFor(t, "the memory restart", 10*time.Second, func() bool {
		return rec.count("process started") == 2 && p.State() == StateRunning
	})
	s := p.Status()
	if s.MemoryRestarts != 1 || s.LastMemoryRestartAt == nil || s.LastStartReason != "memory" || s.Restarts != 0 || s.PID == first {
		t.Fatalf("status after a memory restart: %+v", s)
	}
	exceeded := rec.find("memory limit exceeded", 0)
	if len(exceeded) != 3 || exceeded[0].Value != "hog" || exceeded[1].Value != float64(32<<20) || exceeded[2].Value.(int64) <= 32<<20 {
		t.Fatalf("limit event %s", dataString(exceeded))
	}
	if got := dataString(rec.find("process started", 1)); got != "command="+spec.Command+" id=hog pid="+itoa(s.PID)+" reason=memory" {
		t.Fatalf("restart event %s", got)
	}
	if groupAlive(first) {
		t.Fatal("the old instance's group is gone before the new one starts")
	}
	p.Stop()
}

// A process asked to stop during a memory restart stays down.
func TestStopDuringMemoryRestartWins(t *testing.T) {
	clock := NewFakeClock(epoch)
	spec, pidFile := memorySpec(t, 64, MemoryPolicy{LimitBytes: 32 << 20, CheckInterval: time.Second})
	spec.Lifecycle.QuietCommand = "sleep 0.3"
	p, rec := newProcess(t, spec, clock)
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitForFile(t, pidFile)
	clock.Advance(time.Second)
	waitFor(t, "the memory restart to begin", 5*time.Second, func() bool { return p.State() == StateStopping })
	p.Stop()
	waitFor(t, "the restart goroutine", 5*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return !p.memRestarting
	})
	if p.State() != StateStopped || rec.count("process started") != 1 {
		t.Fatalf("state %s, events %v", p.State(), rec.messages())
	}
}

// GroupRSS measures a group the daemon does not sample (a process without
// a memory block), and refuses a pid that /proc shows started at another
// time or not leading its group: in another pid namespace the daemon's
// numbers name other processes.
func TestGroupRSS(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(fixture, "-alloc-mb", "24", "-pid-file", pidFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	waitForFile(t, pidFile)
	pid := cmd.Process.Pid
	if n, ok := GroupRSS(pid, started); !ok || n < 24<<20 || n > 1<<30 {
		t.Errorf("GroupRSS of a 24 MiB process: %d, %v", n, ok)
	}
	if n, ok := GroupRSS(pid, started.Add(-time.Hour)); ok {
		t.Errorf("a process that started an hour after the daemon's record was measured: %d", n)
	}
	// A process in our own group does not lead it.
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	if n, ok := GroupRSS(other.Process.Pid, time.Now()); ok {
		t.Errorf("a process that does not lead its group was measured: %d", n)
	}
	if _, ok := GroupRSS(0, time.Now()); ok {
		t.Error("pid 0 was measured")
	}
}
