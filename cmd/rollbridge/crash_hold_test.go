package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// groupMembers lists the live processes of process group pgid.
func groupMembers(pgid int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && alive(pid) && processGroupOf(pid) == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// A daemon SIGKILLed while a deploy's --before-switch command runs (a
// migration) leaves the command on record: the next daemon lists it among
// the orphans, and recover --force stops its whole process group.
func TestCrashDuringBeforeSwitchCommandLeavesItOnRecord(t *testing.T) {
	mark := testMark(t)
	d := startCrashDaemon(t, mark)
	d.releaseDir("v1", true)
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy v1: %+v", r)
	}
	dir := d.releaseDir("v2", true)
	deploy := exec.Command(binary, "deploy", "-c", d.config, "--release-path", dir, "--release-id", "v2",
		"--hold-traffic", "--max-pause", "5m", "--before-switch", `echo $$ > pidfile.tmp && mv pidfile.tmp pidfile; sleep 60`)
	deploy.Dir = d.dir
	if err := deploy.Start(); err != nil {
		t.Fatal(err)
	}
	deployDone := make(chan struct{})
	go func() { deploy.Wait(); close(deployDone) }()
	t.Cleanup(func() {
		select {
		case <-deployDone:
		case <-time.After(10 * time.Second):
			deploy.Process.Kill()
			<-deployDone
		}
	})

	var pid int
	waitUntil(t, "the before-switch command to run", 30*time.Second, func() bool {
		raw, _ := os.ReadFile(filepath.Join(dir, "pidfile"))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		return pid > 0
	})
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	// The shell writes the pid file before it forks the sleep.
	waitUntil(t, "the command's sleep to start", 10*time.Second, func() bool { return len(groupMembers(pid)) >= 2 })
	d.crashDaemon()
	group := groupMembers(pid)
	if !alive(pid) || len(group) < 2 {
		t.Fatalf("the command's group after the crash: %v (want the shell %d and its sleep): the test proves nothing", group, pid)
	}

	d.start()
	found := false
	for _, o := range d.status()["orphans"].([]any) {
		m := o.(map[string]any)
		if m["pid"] == float64(pid) {
			found = m["id"] == "v2 before-switch command" && m["releaseId"] == "v2"
			if !found {
				t.Fatalf("orphan %v", m)
			}
		}
	}
	if !found {
		t.Fatalf("the before-switch command (pid %d) is not among the orphans", pid)
	}
	if !sawEvent(d, "orphaned managed process detected", map[string]string{"processId": "v2 before-switch command", "releaseId": "v2"}) {
		t.Fatalf("no orphan event for the command:\n%s", d.stdout.String())
	}
	d.stopDaemon()
	if !alive(pid) {
		t.Fatal("the command ended before recover: the test proves nothing")
	}
	r := d.cli("recover", "--force")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Stopped ") || !strings.Contains(r.stdout, "v2 before-switch command") {
		t.Fatalf("recover --force: %+v", r)
	}
	for _, p := range group {
		if alive(p) {
			t.Errorf("process %d of the command's group survived recover --force", p)
		}
	}
	if left := groupMembers(pid); len(left) > 0 {
		t.Fatalf("the command's process group still has %v", left)
	}
	if left := markedProcesses(mark); len(left) > 0 {
		t.Fatalf("recover --force left processes of the test running: %v", left)
	}
	t.Logf("the command's group (%d processes, pid %d) survived the crash, was listed as an orphan and stopped by recover --force:\n%s", len(group), pid, r.stdout)
}
