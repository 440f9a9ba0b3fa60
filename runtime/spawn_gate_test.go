package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cmdline is the command line of pid with spaces between the arguments.
func cmdline(pid int) string {
	data, _ := os.ReadFile("/proc/" + itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(data), "\x00", " ")
}

// OnSpawn sees every child before it runs anything: the main command with
// its pid and start time already in Status, each hook already in Hooks.
// A hook is no longer listed once it ended.
func TestOnSpawnRecordsChildrenBeforeTheyRun(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	var mu sync.Mutex
	var seen []string
	var p *Process
	spec := baseSpec(t, "touch "+mark+"; exec sleep 60")
	spec.Lifecycle = Lifecycle{QuietCommand: "touch " + mark + ".quiet", StopCommand: "kill $ROLLBRIDGE_PID"}
	p = New(spec, Options{OnSpawn: func(s Spawn) {
		mu.Lock()
		defer mu.Unlock()
		// Still the gate: the command has not been executed yet. (The
		// kernel fills in the command line a moment after exec reports
		// success.)
		var line string
		waitFor(t, "the child's command line", 5*time.Second, func() bool {
			line = cmdline(s.PID)
			return line != ""
		})
		if !strings.Contains(line, gateScript) {
			t.Errorf("%s %q runs before it was recorded: %q", s.ID, s.Hook, line)
		}
		if _, err := os.Stat(mark); s.Hook == "" && err == nil {
			t.Error("the command ran before it was recorded")
		}
		ticks, ok := StartTime(s.PID)
		if !ok || ticks != s.StartTime {
			t.Errorf("start time %d, /proc says %d %v", s.StartTime, ticks, ok)
		}
		if s.Hook == "" {
			if st := p.Status(); st.PID != s.PID || st.StartTime != s.StartTime {
				t.Errorf("status %d/%d, spawn %d/%d", st.PID, st.StartTime, s.PID, s.StartTime)
			}
		} else if hooks := p.Hooks(); len(hooks) != 1 || hooks[0] != (Hook{Label: s.Hook, PID: s.PID, StartTime: s.StartTime}) {
			t.Errorf("hooks %+v while %s runs", hooks, s.Hook)
		}
		seen = append(seen, s.ID+"/"+s.Hook)
	}})
	t.Cleanup(func() {
		if pgid := p.Status().PID; pgid > 0 {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the command to run", 10*time.Second, func() bool {
		_, err := os.Stat(mark)
		return err == nil
	})
	p.Stop()
	mu.Lock()
	got := strings.Join(seen, ",")
	mu.Unlock()
	if got != "proc/,proc/quiet command,proc/stop command" {
		t.Fatalf("spawns %s", got)
	}
	if hooks := p.Hooks(); len(hooks) != 0 {
		t.Fatalf("hooks after the stop: %+v", hooks)
	}
}

// A gated child whose owner goes away before opening the gate exits
// without running its command.
func TestGateDroppedChildRunsNothing(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	cmd, r, g, err := gatedCommand("touch " + mark)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	g.drop() // what the owner's death does to the pipe
	err = cmd.Wait()
	if cmd.ProcessState.ExitCode() != gateExitCode {
		t.Fatalf("exit %v", err)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the command ran behind a dropped gate")
	}
	// Opened, the same command runs as `/bin/sh -c command` under the
	// pid that was recorded.
	cmd, r, g, _ = gatedCommand("touch " + mark + "; exec sleep 60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r.Close()
	g.open()
	waitFor(t, "the command to run", 10*time.Second, func() bool {
		return cmdline(cmd.Process.Pid) == "sleep 60 "
	})
	if _, err := os.Stat(mark); err != nil {
		t.Fatal(err)
	}
}

// A held start is recorded in Status but runs nothing, and OnSpawn is
// not called, until its owner releases it; "process started" follows the
// release.
func TestStartHeldRunsOnRelease(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	spawns := 0
	spec := baseSpec(t, "touch "+mark+"; exec sleep 60")
	rec := &recorder{}
	p := New(spec, Options{OnEvent: rec.add, OnSpawn: func(Spawn) { spawns++ }})
	t.Cleanup(p.Stop)
	release, err := p.StartHeld(ReasonDeploy, nil)
	if err != nil || release == nil {
		t.Fatalf("release %v, err %v", release != nil, err)
	}
	st := p.Status()
	if st.PID == 0 || st.StartTime == 0 || st.State != StateRunning {
		t.Fatalf("held status %+v", st)
	}
	waitFor(t, "the child's command line", 5*time.Second, func() bool { return cmdline(st.PID) != "" })
	if !strings.Contains(cmdline(st.PID), gateScript) || rec.count("process started") != 0 || spawns != 0 {
		t.Fatalf("held child %q, events %v, spawns %d", cmdline(st.PID), rec.messages(), spawns)
	}
	release(true)
	waitFor(t, "the command to run", 10*time.Second, func() bool {
		_, err := os.Stat(mark)
		return err == nil
	})
	if got := dataString(rec.find("process started", 0)); got != "command="+spec.Command+" id=proc pid="+itoa(st.PID)+" reason=deploy" || spawns != 0 {
		t.Fatalf("after the release: %s, spawns %d", got, spawns)
	}
	// Nothing is spawned when abort says so.
	if release, err := p.StartHeld(ReasonDeploy, func() bool { return true }); release != nil || err != nil {
		t.Fatalf("aborted: release %v, err %v", release != nil, err)
	}
}

// A held start that is dropped never runs its command: the child exits
// at the closed gate, no start or exit is reported, nothing restarts,
// and the process is stopped when release returns.
func TestStartHeldDropped(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "ran")
	spec := baseSpec(t, "touch "+mark+"; exec sleep 60")
	spec.Restart.Delay = time.Millisecond
	rec := &recorder{}
	p := New(spec, Options{OnEvent: rec.add})
	t.Cleanup(p.Stop)
	release, err := p.StartHeld(ReasonDeploy, nil)
	if err != nil || release == nil {
		t.Fatalf("release %v, err %v", release != nil, err)
	}
	pid := p.PID()
	release(false)
	if st := p.Status(); st.State != StateStopped || st.PID != 0 || st.Exited || alive(pid) {
		t.Fatalf("after a drop: %+v, child alive %v", st, alive(pid))
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the command ran behind a dropped gate")
	}
	if n := len(rec.messages()); n != 0 {
		t.Fatalf("events: %v", rec.messages())
	}
	// The process can still be started normally afterwards.
	if err := p.Start(ReasonManual); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the command to run", 10*time.Second, func() bool {
		_, err := os.Stat(mark)
		return err == nil
	})
}

// BenchmarkGatedSpawn is what the gate adds to a start: the spawn of
// `/bin/sh -c "exec true"` to its exit, directly and behind a gate that
// is opened at once (one more exec of /bin/sh).
func BenchmarkGatedSpawn(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/sh", "-c", "exec true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gated", func(b *testing.B) {
		for b.Loop() {
			cmd, r, g, err := gatedCommand("exec true")
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			r.Close()
			g.open()
			if err := cmd.Wait(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
