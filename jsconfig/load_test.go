package jsconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const validBody = `proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]`

func writeConfig(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadError(t *testing.T, src string, opts Options) string {
	t.Helper()
	p := writeConfig(t, t.TempDir(), "rollbridge.js", src)
	_, _, err := Check(p, opts)
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("want a load error, got %v", err)
	}
	return strings.ReplaceAll(le.Message, p, "<abs>")
}

func TestLoadDeadline(t *testing.T) {
	for name, src := range map[string]string{
		"promise never settles": `export default () => new Promise(() => {});`,
		"busy loop":             `while (true) {}`,
		"busy getter":           `export default { get proxy() { for (;;) {} }, processes: [] };`,
		"interval keeps going":  `setInterval(() => {}, 1); export default () => new Promise(() => {});`,
	} {
		t.Run(name, func(t *testing.T) {
			got := loadError(t, src, Options{Timeout: 300 * time.Millisecond})
			if want := "Config module <abs> did not finish loading within 0.3s"; got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
	if got := timeoutError("/x.js", DefaultTimeout).Error(); got != "Config module /x.js did not finish loading within 10s" {
		t.Fatalf("default deadline message: %q", got)
	}
}

// A command whose shell exited while a process outside its group (one
// that called setsid) holds the output is not reaped until the deadline:
// the shell keeps its process group's id reserved, so the group kill at
// the deadline cannot reach another group that took the id over. Reaped
// at once, the id was free for the whole load.
func TestExecSyncShellKeepsItsGroupUntilTheKill(t *testing.T) {
	dir := t.TempDir()
	shellFile, jobFile := filepath.Join(dir, "shell"), filepath.Join(dir, "job")
	src := `import {execSync} from "node:child_process";
execSync("setsid sh -c 'echo $$ > ` + jobFile + `; exec sleep 30' & until [ -s ` + jobFile + ` ]; do sleep 0.01; done; echo $$ > ` + shellFile + `");
export default {` + validBody + `};`
	const timeout = 1500 * time.Millisecond
	deadline := time.Now().Add(timeout)
	config := writeConfig(t, dir, "rollbridge.js", src)
	loaded := make(chan string, 1)
	go func() {
		_, _, err := Check(config, Options{Timeout: timeout})
		loaded <- fmt.Sprint(err)
	}()
	t.Cleanup(func() {
		if data, err := os.ReadFile(jobFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	var shell int
	for {
		select {
		case got := <-loaded:
			if shell == 0 {
				t.Fatalf("the load ended (%q) before the shell wrote its pid", got)
			}
			if !strings.Contains(got, "did not finish loading within 1.5s") {
				t.Fatalf("got %q", got)
			}
			return
		case <-time.After(5 * time.Millisecond):
		}
		if shell == 0 {
			data, _ := os.ReadFile(shellFile)
			shell, _ = strconv.Atoi(strings.TrimSpace(string(data)))
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(shell)); errors.Is(err, fs.ErrNotExist) && time.Now().Before(deadline) {
			t.Fatalf("the exited shell %d was reaped before the load deadline: its group id was free to be taken", shell)
		}
	}
}

// A command started by execSync is killed with its whole group when the
// load deadline passes, also once the shell has exited and only its
// background job holds the output open (execSync waits for the output to
// end, as Node's does); nothing outlives the load.
func TestExecSyncKilledAtDeadline(t *testing.T) {
	for name, command := range map[string]string{
		"shell waiting": "sleep 60 & echo $! > PIDFILE; wait",
		"shell exited":  "sleep 60 & echo $! > PIDFILE",
	} {
		t.Run(name, func(t *testing.T) { execSyncKilledAtDeadline(t, command) })
	}
}

func execSyncKilledAtDeadline(t *testing.T, command string) {
	// The deadline also covers bundling and the runtime's set-up, so on a
	// loaded machine it can pass before the command has started (or
	// written its grandchild's pid), which tests nothing: then try again
	// with a longer one.
	for timeout := 500 * time.Millisecond; ; timeout *= 2 {
		pidFile := filepath.Join(t.TempDir(), "pid")
		src := `import {execSync} from "node:child_process";
execSync(` + strconv.Quote(strings.ReplaceAll(command, "PIDFILE", pidFile)) + `);
export default {` + validBody + `};`
		got := loadError(t, src, Options{Timeout: timeout})
		if want := fmt.Sprintf("did not finish loading within %gs", timeout.Seconds()); !strings.Contains(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		data, err := os.ReadFile(pidFile)
		if (errors.Is(err, fs.ErrNotExist) || err == nil && len(bytes.TrimSpace(data)) == 0) && timeout < 8*time.Second {
			t.Logf("the %v deadline passed before the command wrote its grandchild's pid; trying %v", timeout, 2*timeout)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for running(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("grandchild %d of execSync outlived the load", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return
	}
}

// slowWriter is a consumer that takes delay over every write, like a
// daemon's stderr behind a busy log collector.
type slowWriter struct {
	delay time.Duration
	mu    sync.Mutex
	buf   bytes.Buffer
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(w.delay)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// execSync returns once the command has exited and its output has been
// read to the end, however slowly its stderr is shown: a command that
// succeeded is not reported as failed, and no output is lost. (exec's
// WaitDelay used to close the pipes 100ms after the exit.)
func TestExecSyncReadsAllOutputOfASlowConsumer(t *testing.T) {
	p := writeConfig(t, t.TempDir(), "rollbridge.js", `import {execSync} from "node:child_process";
const big = "0123456789abcdef".repeat(20000); // 320 kB, more than a pipe holds
const out = execSync("echo err1 >&2; cat; echo err2 >&2", {input: big, encoding: "utf8"});
const ignored = execSync("true", {input: big, encoding: "utf8"});
export default {application: out.length + ":" + (out === big) + ":" + JSON.stringify(ignored), `+validBody+`};`)
	stderr := &slowWriter{delay: 300 * time.Millisecond}
	plan, issues, err := Check(p, Options{Stderr: stderr})
	if err != nil || len(issues) > 0 {
		t.Fatalf("err %v issues %v", err, issues)
	}
	if want := `320000:true:""`; plan.Application != want {
		t.Fatalf("application %q, want %q", plan.Application, want)
	}
	stderr.mu.Lock()
	defer stderr.mu.Unlock()
	if got := stderr.buf.String(); got != "err1\nerr2\n" {
		t.Fatalf("stderr shown %q", got)
	}
}

// running reports whether pid is a process that has not ended. A zombie
// has: killed, it waits for init to reap it, which takes init seconds in
// some containers and forever under an init that never reaps.
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself contain spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// Whatever the config reaches once the deadline has passed, the load's
// error is the deadline's: the deadline is what killed the command, so
// its "Command failed", or a config that caught it and went on, must not
// be reported instead. (Both used to race the deadline's own timer.)
func TestOutcomeAfterTheDeadlineIsTheDeadline(t *testing.T) {
	e := startEvaluator("/x.js", time.Now(), Options{Timeout: 500 * time.Millisecond})
	defer e.stop()
	<-e.ctx.Done()
	e.finish(outcome{plan: &Plan{}})
	o := <-e.done
	if o.plan != nil || o.err == nil || o.err.Error() != "Config module /x.js did not finish loading within 0.5s" {
		t.Fatalf("outcome after the deadline: plan %v, err %v", o.plan, o.err)
	}
}

func TestExecSyncCaughtAtDeadlineIsTheDeadline(t *testing.T) {
	src := `import {execSync} from "node:child_process";
try { execSync("sleep 60"); } catch (e) {}
export default {` + validBody + `};`
	if got := loadError(t, src, Options{Timeout: 300 * time.Millisecond}); got != "Config module <abs> did not finish loading within 0.3s" {
		t.Fatalf("got %q", got)
	}
}

func TestExecSyncFailureIsCatchable(t *testing.T) {
	dir := t.TempDir()
	p := writeConfig(t, dir, "rollbridge.js", `import {execSync} from "child_process";
let application;
try { execSync("echo oops >&2; exit 3"); } catch (e) { application = e.status + "|" + e.message + "|" + e.stderr; }
export default {application, `+validBody+`};`)
	var stderr bytes.Buffer
	plan, issues, err := Check(p, Options{Stderr: &stderr})
	if err != nil || len(issues) > 0 {
		t.Fatalf("err %v issues %v", err, issues)
	}
	if want := "3|Command failed: echo oops >&2; exit 3\noops\n|oops\n"; plan.Application != want {
		t.Fatalf("application %q, want %q", plan.Application, want)
	}
	if stderr.String() != "oops\n" {
		t.Fatalf("the command's stderr is shown as Node shows it; got %q", stderr.String())
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"timer callback throws", `export default () => new Promise(() => setTimeout(() => { throw new Error("late") }, 1));`, "late"},
		{"thrown object", `throw {code: 1};`, "[object Object]"},
		{"require in ESM", `export default {x: require(process.env.NOPE ?? "os")};`, `Dynamic require of "os" is not supported`},
		{"__dirname declared locally", `const __dirname = 5; export default { get proxy() { throw new Error("dir " + __dirname) } };`, "dir 5"},
		{"process.exit", `process.exit(2);`, "process.exit(2) was called while loading the config"},
		{"fs error shape", `import fs from "fs"; try { fs.readFileSync("/nonexistent/x") } catch (e) { throw new Error(e.code + " " + e.syscall + " " + e.message) }`,
			"ENOENT open ENOENT: no such file or directory, open '/nonexistent/x'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := loadError(t, tc.src, Options{Timeout: 5 * time.Second}); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConsoleGoesToTheGivenWriters(t *testing.T) {
	p := writeConfig(t, t.TempDir(), "rollbridge.js", `console.log("%s=%d%%", "cpu", 50, 1, {b: 2, c: ["x", 3]}, "%d"); console.warn("w"); export default {`+validBody+`};`)
	var out, errOut bytes.Buffer
	if _, _, err := Check(p, Options{Stdout: &out, Stderr: &errOut}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "cpu=50% 1 { b: 2, c: [ 'x', 3 ] } %d\n" || errOut.String() != "w\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errOut.String())
	}
}

// Config code that sets process.env changes the loading process's
// environment, so a daemon's templates and children see it.
func TestProcessEnvWritesReachTheProcess(t *testing.T) {
	t.Setenv("ROLLBRIDGE_TEST_FROM_CONFIG", "before")
	p := writeConfig(t, t.TempDir(), "rollbridge.js", `process.env.ROLLBRIDGE_TEST_FROM_CONFIG = 42;
export default {application: process.env.ROLLBRIDGE_TEST_FROM_CONFIG + ":" + ("ROLLBRIDGE_TEST_FROM_CONFIG" in process.env), `+validBody+`};`)
	plan, _, err := Check(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Application != "42:true" || os.Getenv("ROLLBRIDGE_TEST_FROM_CONFIG") != "42" {
		t.Fatalf("application %q env %q", plan.Application, os.Getenv("ROLLBRIDGE_TEST_FROM_CONFIG"))
	}
}

// Every local module is read again on each load
// (docs/config.md#24-when-the-file-runs).
func TestHelpersAreReadOnEveryLoad(t *testing.T) {
	dir := t.TempDir()
	p := writeConfig(t, dir, "rollbridge.js", `import name from "./name.js"; import data from "./data.json" with {type: "json"};
export default {application: name + data.n, `+validBody+`};`)
	for _, n := range []string{"1", "2"} {
		writeConfig(t, dir, "name.js", `export default "v`+n+`-";`)
		writeConfig(t, dir, "data.json", `{"n": `+n+`}`)
		plan, _, err := Check(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if want := "v" + n + "-" + n; plan.Application != want {
			t.Fatalf("load %s: application %q, want %q", n, plan.Application, want)
		}
	}
}

func TestStrictLoad(t *testing.T) {
	p := writeConfig(t, t.TempDir(), "rollbridge.js", `export default {proxy: {port: "x"}, processes: []};`)
	_, err := Load(p, Options{})
	want := "Invalid Rollbridge config:\n  - proxy.port must be a number\n  - Config must define exactly one proxied process; found 0"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	plan, err := Load(writeConfig(t, t.TempDir(), "rollbridge.js", `export default {`+validBody+`};`), Options{})
	if err != nil || plan.ProxiedProcess().ID != "web" {
		t.Fatalf("plan %+v err %v", plan, err)
	}
}

func TestLocate(t *testing.T) {
	dir := t.TempDir()
	if _, err := Locate("", false, dir); err == nil || err.Error() != "No config file found in "+dir+". Pass --config <path> or add one of: rollbridge.js." {
		t.Fatalf("empty dir: %v", err)
	}
	// A directory named rollbridge.js does not count.
	if err := os.Mkdir(filepath.Join(dir, "rollbridge.js"), 0o755); err != nil {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if _, err := Locate("", false, dir); !errors.As(err, &nf) {
		t.Fatalf("directory candidate: %v", err)
	}
	other := t.TempDir()
	writeConfig(t, other, "rollbridge.js", "")
	loc, err := Locate("", false, other)
	if err != nil || loc.Display != filepath.Join(other, "rollbridge.js") || loc.Abs != loc.Display {
		t.Fatalf("default: %+v %v", loc, err)
	}
	loc, err = Locate("./sub/../sub/my.js", true, "/srv/app")
	if err != nil || loc.Display != "./sub/../sub/my.js" || loc.Abs != "/srv/app/sub/my.js" {
		t.Fatalf("explicit: %+v %v", loc, err)
	}
	loc, _ = Locate("", true, dir)
	_, _, err = Check(loc.Abs, Options{})
	if err == nil || err.Error() != "EISDIR: illegal operation on a directory, read" {
		t.Fatalf(`--config "": %v`, err)
	}
}

// TestFileValuesBoundWhenSpelledUnusually covers the text check that
// decides whether a local file needs its import.meta, __dirname and
// __filename bound: spellings a plain substring search would miss must
// still be bound.
func TestFileValuesBoundWhenSpelledUnusually(t *testing.T) {
	for name, c := range map[string]struct{ file, src string }{
		"import.meta spaced out":  {"rollbridge.mjs", "export default {application: import /* a */ . meta.dirname, " + validBody + "};"},
		"__dirname with a escape": {"rollbridge.cjs", "module.exports = {application: __dirnam\\u0065, " + validBody + "};"},
		"plain __filename":        {"rollbridge.cjs", "module.exports = {application: require('path').dirname(__filename), " + validBody + "};"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			plan, issues, err := Check(writeConfig(t, dir, c.file, c.src), Options{})
			if err != nil || len(issues) > 0 {
				t.Fatalf("err %v issues %v", err, issues)
			}
			if plan.Application != dir {
				t.Fatalf("application %q, want the config's directory %q", plan.Application, dir)
			}
		})
	}
	if usesFileValues([]byte(`export default {application: "x", proxy: {}}`)) {
		t.Fatal("a config without file values took the binding pass")
	}
}

// process.pid and process.ppid are this process's unless the loader says
// whose they are (the daemon's, for a config it loads in a child process);
// the process module is the same object.
func TestProcessPidOption(t *testing.T) {
	src := `import proc from "node:process";
console.log(JSON.stringify([process.pid, process.ppid, proc === process]));
export default {` + validBody + `};`
	p := writeConfig(t, t.TempDir(), "rollbridge.js", src)
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "[" + strconv.Itoa(os.Getpid()) + "," + strconv.Itoa(os.Getppid()) + ",true]"},
		{Options{PID: 4242, PPID: 4343}, "[4242,4343,true]"},
	} {
		var out bytes.Buffer
		tc.opts.Stdout = &out
		if _, issues, err := Check(p, tc.opts); err != nil || len(issues) > 0 {
			t.Fatalf("load: %v %v", err, issues)
		}
		if got := strings.TrimSpace(out.String()); got != tc.want {
			t.Errorf("PID %d PPID %d: got %s, want %s", tc.opts.PID, tc.opts.PPID, got, tc.want)
		}
	}
}
