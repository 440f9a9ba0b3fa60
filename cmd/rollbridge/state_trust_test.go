package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/runtime"
)

// bystander starts a process group that has nothing to do with
// rollbridge; the test kills it at the end.
func bystander(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return cmd.Process.Pid
}

// trustDir is a config with a statePath in dir, and the state path.
func trustDir(t *testing.T) (dir, config, state string) {
	dir = t.TempDir()
	state = filepath.Join(dir, "state.json")
	config = filepath.Join(dir, "rollbridge.js")
	os.WriteFile(config, []byte(appConfig(dir, `statePath: `+strconv.Quote(state)+`, proxy: {port: 0, forceStopTimeoutMs: 300}, processes: [`+webProcess+`]`)), 0o644)
	return dir, config, state
}

// goEntry is a state file naming pid as a Go daemon records it.
func goEntry(pid, pgid int) string {
	ticks, _ := runtime.StartTime(pid)
	return fmt.Sprintf(`{"activeReleaseId":"v1","orphans":[],"releases":[{"releaseId":"v1","processes":[{"id":"worker","pgid":%d,"pid":%d,"startTime":%d}]}],"services":[],"singletons":[]}`, pgid, pid, ticks)
}

// nodeEntry is a state file naming pid as the Node.js rollbridge does:
// no process group, no start time.
func nodeEntry(pid int) string {
	return fmt.Sprintf(`{"activeReleaseId":"v1","orphans":[],"releases":[{"releaseId":"v1","processes":[{"id":"worker","pid":%d}]}],"services":[],"singletons":[]}`, pid)
}

// A state file that another local user could have written names an
// unrelated process group: recover, doctor and predeploy-cleanup refuse it
// with the file, the reason and what to do, and nothing is signalled.
func TestUntrustedStateFilesAreRefused(t *testing.T) {
	requireRoot(t)
	victim := bystander(t)
	cases := []struct {
		name, reason string
		prepare      func(t *testing.T, state string)
	}{
		{"written by another user", "it is owned by uid 65534", func(t *testing.T, state string) {
			// The other user writes it (the directory lets it).
			os.Chmod(filepath.Dir(state), 0o777)
			os.Chmod(filepath.Dir(filepath.Dir(state)), 0o755)
			w := exec.Command("sh", "-c", `printf '%s' "$1" > "$2"`, "sh", goEntry(victim, victim), state)
			w.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			if out, err := w.CombinedOutput(); err != nil {
				t.Fatalf("writing as uid %d: %v %s", nobody, err, out)
			}
			os.Chmod(filepath.Dir(state), 0o755)
		}},
		{"writable by others", "it is writable by group or others (mode 0666)", func(t *testing.T, state string) {
			os.WriteFile(state, []byte(goEntry(victim, victim)), 0o600)
			os.Chmod(state, 0o666)
		}},
		{"a symlink", "it is a symbolic link", func(t *testing.T, state string) {
			target := state + ".real"
			os.WriteFile(target, []byte(goEntry(victim, victim)), 0o600)
			os.Symlink(target, state)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, config, state := trustDir(t)
			c.prepare(t, state)
			refusal := "Refusing to use the state file " + state + ": " + c.reason + ". Only a regular file owned by root and not writable by group or others is trusted, because rollbridge signals the processes it lists. Inspect it: if it is genuine, fix its owner and mode (chown 0 " + state + " && chmod 600 " + state + "); otherwise remove it."
			if r := rollbridge(t, dir, "recover", "--force", "-c", config); r.code != 1 || r.stdout != "" || r.stderr != refusal+"\n" {
				t.Fatalf("recover --force: %+v", r)
			}
			if r := rollbridge(t, dir, "recover", "-c", config); r.code != 1 || r.stderr != refusal+"\n" {
				t.Fatalf("recover: %+v", r)
			}
			if r := rollbridge(t, dir, "predeploy-cleanup", "-c", config); r.code != 1 || r.stderr != "Error: "+refusal+"\n" {
				t.Fatalf("predeploy-cleanup: %+v", r)
			}
			if r := rollbridge(t, dir, "doctor", "-c", config); r.code != 1 || !strings.Contains(r.stdout, "✗ orphaned processes: "+refusal+"\n") {
				t.Fatalf("doctor: %+v", r)
			}
			if !alive(victim) {
				t.Fatal("root signalled the process group a foreign state file named")
			}
			if _, err := os.Lstat(state); err != nil {
				t.Fatalf("a refused state file was removed: %v", err)
			}
		})
	}
}

// recover --force signals only a process whose process group and start
// time match the record; an entry without a start time only when the
// process leads its group and started before the file was written.
func TestRecoverConfirmsIdentityBeforeSignalling(t *testing.T) {
	// The recorded group no longer matches: left alone.
	dir, config, state := trustDir(t)
	victim := bystander(t)
	os.WriteFile(state, []byte(goEntry(victim, victim+1)), 0o600)
	want := fmt.Sprintf("Skipped 1 orphaned process that no longer lead their process group (pid likely recycled):\n  worker (pid %d, release v1)\n", victim)
	if r := rollbridge(t, dir, "recover", "--force", "-c", config); r.code != 0 || r.stdout != want || !alive(victim) {
		t.Fatalf("pgid mismatch: %+v (alive %v)", r, alive(victim))
	}

	// A Node.js entry for a process that started after the file was
	// written: its identity cannot be confirmed.
	os.WriteFile(state, []byte(nodeEntry(victim)), 0o600)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(state, past, past)
	list := fmt.Sprintf("  worker (pid %d, release v1)\n", victim)
	header := "Cannot confirm the identity of 1 orphaned process (recorded without a start time, and not started before the state file was written)"
	if r := rollbridge(t, dir, "recover", "-c", config); r.code != 0 || r.stdout != "Found 1 orphaned process (run with --force to stop):\n"+list+"Review the list first — a recycled pid could be an unrelated process.\n"+header+"; --force will leave them alone:\n"+list {
		t.Fatalf("dry run, unconfirmed: %+v", r)
	}
	want = header + "; left running:\n" + list + "Check each with \"ps -o pid,pgid,lstart,args -p <pid>\" and stop the leftovers yourself (\"kill -TERM -- -<pid>\"); the state file stays in place until they are gone.\n"
	if r := rollbridge(t, dir, "recover", "--force", "-c", config); r.code != 0 || r.stdout != want || !alive(victim) {
		t.Fatalf("recover --force, unconfirmed: %+v (alive %v)", r, alive(victim))
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("the state file went although an entry is unconfirmed: %v", err)
	}
	if r := rollbridge(t, dir, "predeploy-cleanup", "-c", config); r.code != 0 || r.stdout != "No active Rollbridge daemon found.\nRecovered 0 Rollbridge orphaned processes.\nLeft 1 Rollbridge orphaned process running whose identity cannot be confirmed; run \"rollbridge recover\" to review it.\nStopped 0 legacy processes.\n" || !alive(victim) {
		t.Fatalf("predeploy-cleanup, unconfirmed: %+v", r)
	}

	// The same entry once the process provably started before the file
	// was written (more than the second /proc's boot time may be off).
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(state, later, later)
	if r := rollbridge(t, dir, "recover", "--force", "-c", config); r.code != 0 || r.stdout != "Stopped 1 orphaned process:\n"+list {
		t.Fatalf("recover --force, confirmed: %+v", r)
	}
	waitUntil(t, "the recorded process to stop", 5*time.Second, func() bool { return !alive(victim) })
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("state file after a full recovery: %v", err)
	}
}

// The daemon writes its state file 0600 whatever the umask, and at
// start-up sets aside a state file it does not trust: it logs
// "state file untrusted", uses none of its entries and keeps its content
// for the operator.
func TestDaemonStateFileModeAndUntrustedStartup(t *testing.T) {
	requireRoot(t)
	victim := bystander(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	os.WriteFile(state, []byte(goEntry(victim, victim)), 0o600)
	os.Chown(state, nobody, nobody)
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{},
		wrap: []string{"sh", "-c", `umask 0; exec "$0" "$@"`}}
	d.writeConfig(`statePath: ` + strconv.Quote(state) + `, processes: [{id: "worker", command: "exec FIXTURE"}, ` + webProcess + `]`)
	d.start()
	t.Cleanup(d.cleanup)
	if s := d.status(); len(s["orphans"].([]any)) != 0 {
		t.Fatalf("orphans from an untrusted file: %v", s["orphans"])
	}
	moved := state + ".untrusted"
	want := `"data":{"error":` + strconv.Quote("Refusing to use the state file "+state+": it is owned by uid 65534. Only a regular file owned by root and not writable by group or others is trusted, because rollbridge signals the processes it lists. Inspect it: if it is genuine, fix its owner and mode (chown 0 "+state+" && chmod 600 "+state+"); otherwise remove it.") +
		`,"movedTo":` + strconv.Quote(moved) + `,"statePath":` + strconv.Quote(state) + `},"message":"state file untrusted"}`
	if !strings.Contains(d.stdout.String(), want) {
		t.Fatalf("log:\n%s\nwant %s", d.stdout.String(), want)
	}
	if fi, err := os.Stat(moved); err != nil || fi.Sys().(*syscall.Stat_t).Uid != nobody {
		t.Fatalf("the untrusted file was not kept aside: %v", err)
	}
	d.deploy("v1")
	waitUntil(t, "the daemon's own state file", 10*time.Second, func() bool {
		data, _ := os.ReadFile(state)
		return strings.Contains(string(data), `"activeReleaseId": "v1"`)
	})
	fi, err := os.Lstat(state)
	if err != nil || fi.Mode() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("state file under umask 0: %v %v", fi.Mode(), err)
	}
	if !alive(victim) {
		t.Fatal("the bystander was signalled")
	}
	d.shutdown()
}
