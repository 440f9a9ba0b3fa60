package jsconfig

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/buffer"
	_ "github.com/dop251/goja_nodejs/util" // registers the util core module
	"golang.org/x/sys/unix"
)

// The Node built-ins a config may use
// (docs/config.md#23-what-a-config-can-use), implemented in Go against the
// loading process: path, os, fs, url (urlmodule.go), child_process.execSync,
// process and console. buffer and util come from goja_nodejs.

func (rt *jsRuntime) builtin(name string) goja.Value {
	if m, ok := rt.modules[name]; ok {
		return m
	}
	var m *goja.Object
	switch name {
	case "path", "path/posix":
		m = rt.pathModule()
	case "os":
		m = rt.osModule()
	case "fs":
		m = rt.fsModule()
	case "url":
		m = rt.urlModule()
	case "child_process":
		m = rt.childProcessModule()
	case "process":
		m = rt.process
	case "console":
		m = rt.console
	case "buffer":
		m = rt.coreModule("buffer")
	case "util":
		m = rt.coreModule("util")
	default:
		panic(rt.vm.NewGoError(errors.New(unsupportedBuiltinMessage(name))))
	}
	rt.modules[name] = m
	return m
}

// coreModule returns a goja_nodejs core module through its registry (the
// global require itself is removed: configs get built-ins via the bundle).
func (rt *jsRuntime) coreModule(name string) *goja.Object {
	m, err := rt.requireFn(goja.Undefined(), rt.vm.ToValue(name))
	if err != nil {
		panic(err)
	}
	return m.ToObject(rt.vm)
}

func (rt *jsRuntime) set(o *goja.Object, name string, v any) {
	if err := o.Set(name, v); err != nil {
		panic(err)
	}
}

// throwNode throws an Error carrying Node's code/errno/syscall/path fields.
func (rt *jsRuntime) throwNode(err error) {
	var ne *nodeError
	if !errors.As(err, &ne) {
		panic(rt.vm.NewGoError(err))
	}
	e := rt.vm.NewGoError(err)
	rt.set(e, "code", ne.Code())
	rt.set(e, "errno", -int(ne.Errno))
	rt.set(e, "syscall", ne.Syscall)
	if ne.Path != "" {
		rt.set(e, "path", ne.Path)
	}
	panic(e)
}

// pathArg accepts a string or a file: URL object, as Node's fs does.
func (rt *jsRuntime) pathArg(v goja.Value) string {
	if o, ok := isURLLike(v); ok {
		return rt.fileURLToPath(o)
	}
	if !goja.IsString(v) {
		panic(rt.vm.NewTypeError(`The "path" argument must be of type string or an instance of URL.`))
	}
	return v.String()
}

func (rt *jsRuntime) cwd() string {
	wd, err := os.Getwd()
	if err != nil {
		rt.throwNode(toNodeError(err, "uv_cwd", ""))
	}
	return wd
}

// --- path ---

func (rt *jsRuntime) pathModule() *goja.Object {
	m := rt.vm.NewObject()
	strs := func(call goja.FunctionCall) []string {
		out := make([]string, len(call.Arguments))
		for i, a := range call.Arguments {
			if !goja.IsString(a) {
				panic(rt.vm.NewTypeError(`The "path" argument must be of type string.`))
			}
			out[i] = a.String()
		}
		return out
	}
	one := func(call goja.FunctionCall) string {
		a := call.Argument(0)
		if !goja.IsString(a) {
			panic(rt.vm.NewTypeError(`The "path" argument must be of type string.`))
		}
		return a.String()
	}
	rt.set(m, "sep", "/")
	rt.set(m, "delimiter", ":")
	rt.set(m, "join", func(call goja.FunctionCall) goja.Value { return rt.vm.ToValue(pathJoin(strs(call)...)) })
	rt.set(m, "resolve", func(call goja.FunctionCall) goja.Value {
		return rt.vm.ToValue(pathResolve(rt.cwd(), strs(call)...))
	})
	rt.set(m, "normalize", func(call goja.FunctionCall) goja.Value { return rt.vm.ToValue(pathNormalize(one(call))) })
	rt.set(m, "isAbsolute", func(call goja.FunctionCall) goja.Value { return rt.vm.ToValue(strings.HasPrefix(one(call), "/")) })
	rt.set(m, "dirname", func(call goja.FunctionCall) goja.Value { return rt.vm.ToValue(pathDirname(one(call))) })
	rt.set(m, "basename", func(call goja.FunctionCall) goja.Value {
		suffix := ""
		if s := call.Argument(1); goja.IsString(s) {
			suffix = s.String()
		}
		return rt.vm.ToValue(pathBasename(one(call), suffix))
	})
	rt.set(m, "extname", func(call goja.FunctionCall) goja.Value { return rt.vm.ToValue(pathExtname(one(call))) })
	rt.set(m, "relative", func(call goja.FunctionCall) goja.Value {
		a := strs(goja.FunctionCall{Arguments: []goja.Value{call.Argument(0), call.Argument(1)}})
		return rt.vm.ToValue(pathRelative(rt.cwd(), a[0], a[1]))
	})
	rt.set(m, "parse", func(call goja.FunctionCall) goja.Value {
		p := one(call)
		root := ""
		if strings.HasPrefix(p, "/") {
			root = "/"
		}
		base := pathBasename(p, "")
		ext := pathExtname(p)
		dir := ""
		if strings.Contains(strings.TrimRight(p, "/"), "/") || root != "" {
			dir = pathDirname(p)
		}
		o := rt.vm.NewObject()
		rt.set(o, "root", root)
		rt.set(o, "dir", dir)
		rt.set(o, "base", base)
		rt.set(o, "ext", ext)
		rt.set(o, "name", strings.TrimSuffix(base, ext))
		return o
	})
	rt.set(m, "format", func(call goja.FunctionCall) goja.Value {
		o := call.Argument(0).ToObject(rt.vm)
		get := func(k string) string {
			if v := o.Get(k); v != nil && !goja.IsUndefined(v) && !goja.IsNull(v) {
				return v.String()
			}
			return ""
		}
		dir := get("dir")
		if dir == "" {
			dir = get("root")
		}
		base := get("base")
		if base == "" {
			base = get("name") + get("ext")
		}
		switch {
		case dir == "":
			return rt.vm.ToValue(base)
		case dir == get("root"):
			return rt.vm.ToValue(dir + base)
		}
		return rt.vm.ToValue(dir + "/" + base)
	})
	rt.set(m, "posix", m)
	return m
}

// --- os ---

func (rt *jsRuntime) osModule() *goja.Object {
	m := rt.vm.NewObject()
	rt.set(m, "EOL", "\n")
	rt.set(m, "hostname", func() string { h, _ := os.Hostname(); return h })
	rt.set(m, "homedir", func() string { h, _ := os.UserHomeDir(); return h })
	rt.set(m, "tmpdir", func() string {
		if t := os.Getenv("TMPDIR"); t != "" {
			if len(t) > 1 {
				t = strings.TrimSuffix(t, "/")
			}
			return t
		}
		return "/tmp"
	})
	rt.set(m, "platform", func() string { return runtime.GOOS })
	rt.set(m, "type", func() string { return "Linux" })
	rt.set(m, "arch", func() string { return nodeArch() })
	rt.set(m, "endianness", func() string { return "LE" })
	rt.set(m, "release", func() string {
		var u unix.Utsname
		if unix.Uname(&u) != nil {
			return ""
		}
		return unix.ByteSliceToString(u.Release[:])
	})
	rt.set(m, "totalmem", func() float64 {
		var si unix.Sysinfo_t
		if unix.Sysinfo(&si) != nil {
			return 0
		}
		return float64(si.Totalram) * float64(si.Unit)
	})
	rt.set(m, "freemem", func() float64 {
		var si unix.Sysinfo_t
		if unix.Sysinfo(&si) != nil {
			return 0
		}
		return float64(si.Freeram) * float64(si.Unit)
	})
	rt.set(m, "cpus", func() goja.Value {
		model := cpuModel()
		list := make([]any, runtime.NumCPU())
		for i := range list {
			c := rt.vm.NewObject()
			rt.set(c, "model", model)
			rt.set(c, "speed", 0)
			list[i] = c
		}
		return rt.vm.NewArray(list...)
	})
	rt.set(m, "userInfo", func() goja.Value {
		u, err := user.Current()
		if err != nil {
			panic(rt.vm.NewGoError(err))
		}
		o := rt.vm.NewObject()
		rt.set(o, "uid", os.Getuid())
		rt.set(o, "gid", os.Getgid())
		rt.set(o, "username", u.Username)
		rt.set(o, "homedir", u.HomeDir)
		rt.set(o, "shell", loginShell(u.Username))
		return o
	})
	return m
}

func nodeArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x64"
	case "386":
		return "ia32"
	}
	return runtime.GOARCH
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func loginShell(name string) any {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 7 && f[0] == name {
			return f[6]
		}
	}
	return nil
}

// --- fs ---

func (rt *jsRuntime) fsModule() *goja.Object {
	m := rt.vm.NewObject()
	rt.set(m, "existsSync", func(call goja.FunctionCall) goja.Value {
		a := call.Argument(0)
		if !goja.IsString(a) {
			if _, ok := a.(*goja.Object); !ok {
				return rt.vm.ToValue(false)
			}
		}
		_, err := os.Stat(rt.pathArg(a))
		return rt.vm.ToValue(err == nil)
	})
	rt.set(m, "readFileSync", func(call goja.FunctionCall) goja.Value {
		p := rt.pathArg(call.Argument(0))
		data, err := readFileNode(p)
		if err != nil {
			rt.throwNode(err)
		}
		enc := call.Argument(1)
		if o, ok := enc.(*goja.Object); ok {
			enc = o.Get("encoding")
		}
		if enc == nil || goja.IsUndefined(enc) || goja.IsNull(enc) {
			return buffer.WrapBytes(rt.vm, data)
		}
		return buffer.EncodeBytes(rt.vm, data, enc)
	})
	stat := func(follow bool) func(goja.FunctionCall) goja.Value {
		name := "lstat"
		if follow {
			name = "stat"
		}
		return func(call goja.FunctionCall) goja.Value {
			p := rt.pathArg(call.Argument(0))
			var fi os.FileInfo
			var err error
			if follow {
				fi, err = os.Stat(p)
			} else {
				fi, err = os.Lstat(p)
			}
			if err != nil {
				if o, ok := call.Argument(1).(*goja.Object); ok && errors.Is(err, os.ErrNotExist) {
					if t := o.Get("throwIfNoEntry"); t != nil && !goja.IsUndefined(t) && !t.ToBoolean() {
						return goja.Undefined()
					}
				}
				rt.throwNode(toNodeError(err, name, p))
			}
			return rt.statObject(fi)
		}
	}
	rt.set(m, "statSync", stat(true))
	rt.set(m, "lstatSync", stat(false))
	rt.set(m, "readdirSync", func(call goja.FunctionCall) goja.Value {
		p := rt.pathArg(call.Argument(0))
		entries, err := os.ReadDir(p)
		if err != nil {
			rt.throwNode(toNodeError(err, "scandir", p))
		}
		names := make([]any, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		return rt.vm.NewArray(names...)
	})
	rt.set(m, "realpathSync", func(call goja.FunctionCall) goja.Value {
		p := rt.pathArg(call.Argument(0))
		r, err := realpath(p)
		if err != nil {
			rt.throwNode(toNodeError(err, "realpath", p))
		}
		return rt.vm.ToValue(r)
	})
	return m
}

func (rt *jsRuntime) statObject(fi os.FileInfo) *goja.Object {
	o := rt.vm.NewObject()
	mode := fi.Mode()
	rt.set(o, "size", fi.Size())
	rt.set(o, "mtimeMs", float64(fi.ModTime().UnixNano())/1e6)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		rt.set(o, "mode", st.Mode)
		rt.set(o, "uid", st.Uid)
		rt.set(o, "gid", st.Gid)
	}
	mtime, err := rt.vm.New(rt.vm.Get("Date"), rt.vm.ToValue(float64(fi.ModTime().UnixNano())/1e6))
	if err == nil {
		rt.set(o, "mtime", mtime)
	}
	rt.set(o, "isFile", func() bool { return mode.IsRegular() })
	rt.set(o, "isDirectory", func() bool { return mode.IsDir() })
	rt.set(o, "isSymbolicLink", func() bool { return mode&os.ModeSymlink != 0 })
	return o
}

// --- child_process ---

func (rt *jsRuntime) childProcessModule() *goja.Object {
	m := rt.vm.NewObject()
	rt.set(m, "execSync", rt.execSync)
	return m
}

// execSync runs a shell command and returns its stdout, like Node's. The
// command's stderr is shown as it is in Node. Like Node, it returns once
// the command has exited and its output pipes are closed. The load
// deadline (or the command's own timeout) kills its whole process group,
// and pipes still held by grandchildren are closed soon after, so nothing
// outlives the load.
func (rt *jsRuntime) execSync(call goja.FunctionCall) goja.Value {
	command := call.Argument(0).String()
	ctx := rt.ctx
	var dir string
	var env []string
	var stdin io.Reader
	var enc goja.Value
	if o, ok := call.Argument(1).(*goja.Object); ok {
		if v := o.Get("cwd"); v != nil && !goja.IsUndefined(v) && !goja.IsNull(v) {
			dir = rt.pathArg(v)
		}
		if v, ok := o.Get("env").(*goja.Object); ok {
			for _, k := range v.Keys() {
				env = append(env, k+"="+v.Get(k).String())
			}
		}
		if v := o.Get("input"); v != nil && !goja.IsUndefined(v) {
			stdin = strings.NewReader(v.String())
		}
		if v := o.Get("timeout"); v != nil && goja.IsNumber(v) && v.ToFloat() > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(v.ToFloat()*float64(time.Millisecond)))
			defer cancel()
		}
		enc = o.Get("encoding")
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	if err := runCommand(ctx, cmd, stdin, &stdout, &teeWriter{buf: &stderr, w: rt.stderr}); err != nil {
		msg := "Command failed: " + command
		if stderr.Len() > 0 {
			msg += "\n" + stderr.String()
		}
		e := rt.vm.NewGoError(errors.New(msg))
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				rt.set(e, "status", nil)
				rt.set(e, "signal", unix.SignalName(ws.Signal()))
			} else {
				rt.set(e, "status", exitErr.ExitCode())
			}
		}
		rt.set(e, "stdout", stdout.String())
		rt.set(e, "stderr", stderr.String())
		panic(e)
	}
	if enc == nil || goja.IsUndefined(enc) || goja.IsNull(enc) || enc.String() == "buffer" {
		return buffer.WrapBytes(rt.vm, stdout.Bytes())
	}
	return buffer.EncodeBytes(rt.vm, stdout.Bytes(), enc)
}

// killedPipeGrace is how long the output pipes of a command killed by the
// deadline or its timeout are still read: a process outside its group
// (one that called setsid) may hold them open for ever.
const killedPipeGrace = 100 * time.Millisecond

// runCommand runs cmd with input on its stdin (nil: none) and copies its
// stdout and stderr until both pipes close, as Node does, or, once ctx is
// done and the process group killed, for killedPipeGrace more. The pipes
// are this function's own rather than exec's: exec.Cmd's WaitDelay would
// also close them shortly after a normal exit, cutting the output off
// (and failing a command that succeeded) whenever the copying is slow,
// behind a slow stderr reader or on a loaded machine.
func runCommand(ctx context.Context, cmd *exec.Cmd, input io.Reader, stdout, stderr io.Writer) error {
	var ours, theirs []*os.File // the pipes' ends kept here, and the child's
	defer func() {
		// theirs is closed after Start already; closing again is harmless,
		// and covers a pipe that failed to be made after others were.
		for _, f := range append(ours, theirs...) {
			f.Close()
		}
	}()
	pipe := func(childReads bool) (*os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		if childReads {
			ours, theirs = append(ours, w), append(theirs, r)
			return r, nil
		}
		ours, theirs = append(ours, r), append(theirs, w)
		return w, nil
	}
	var err error
	if cmd.Stdout, err = pipe(false); err != nil {
		return err
	}
	if cmd.Stderr, err = pipe(false); err != nil {
		return err
	}
	if input != nil {
		if cmd.Stdin, err = pipe(true); err != nil {
			return err
		}
	}
	err = cmd.Start()
	for _, f := range theirs { // the child has its copies; ours would keep the pipes open
		f.Close()
	}
	if err != nil {
		return err
	}
	outR, errR := ours[0], ours[1]
	if input != nil {
		// A child that exits without reading its stdin ends this with
		// EPIPE; one whose stdin a grandchild keeps open, with the
		// deferred close.
		inW := ours[2]
		go func() {
			_, _ = io.Copy(inW, input)
			inW.Close()
		}()
	}
	copied := make(chan struct{})
	go func() {
		errDone := make(chan struct{})
		go func() {
			_, _ = io.Copy(stderr, errR)
			close(errDone)
		}()
		_, _ = io.Copy(stdout, outR)
		<-errDone
		close(copied)
	}()
	// The shell is reaped last: until then it holds its process group's
	// id, so the kill below cannot reach a group that took the id over.
	select {
	case <-copied:
		return cmd.Wait()
	case <-ctx.Done():
	}
	// The deadline or the timeout passed and the pipes are still open: a
	// background job of a shell that has exited can hold them, so the
	// group is ended here too; a process outside it is cut off.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(killedPipeGrace):
		_ = outR.SetReadDeadline(time.Now())
		_ = errR.SetReadDeadline(time.Now())
		<-copied
	}
	if err = cmd.Wait(); err == nil {
		err = ctx.Err()
	}
	return err
}

type teeWriter struct {
	buf *bytes.Buffer
	w   io.Writer
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.w != nil {
		_, _ = t.w.Write(p)
	}
	return len(p), nil
}

// --- process and console ---

// envObject exposes the loading process's environment; writes reach the
// Go process too, so a daemon's later {{env.*}} and children see them.
type envObject struct{ rt *jsRuntime }

func (e envObject) Get(key string) goja.Value {
	if v, ok := os.LookupEnv(key); ok {
		return e.rt.vm.ToValue(v)
	}
	return nil
}

func (e envObject) Set(key string, val goja.Value) bool {
	return os.Setenv(key, val.String()) == nil
}

func (e envObject) Has(key string) bool { _, ok := os.LookupEnv(key); return ok }

func (e envObject) Delete(key string) bool { return os.Unsetenv(key) == nil }

func (e envObject) Keys() []string {
	env := os.Environ()
	keys := make([]string, 0, len(env))
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); ok && k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func (rt *jsRuntime) newProcess() *goja.Object {
	p := rt.vm.NewObject()
	rt.set(p, "env", rt.vm.NewDynamicObject(envObject{rt}))
	rt.set(p, "cwd", func() string { return rt.cwd() })
	rt.set(p, "platform", runtime.GOOS)
	rt.set(p, "arch", nodeArch())
	rt.set(p, "pid", rt.pid)
	rt.set(p, "ppid", rt.ppid)
	args := make([]any, len(os.Args))
	for i, a := range os.Args {
		args[i] = a
	}
	rt.set(p, "argv", rt.vm.NewArray(args...))
	rt.set(p, "execPath", executablePath())
	rt.set(p, "exit", func(call goja.FunctionCall) goja.Value {
		panic(rt.vm.NewGoError(errors.New("process.exit(" + call.Argument(0).String() + ") was called while loading the config")))
	})
	rt.set(p, "uptime", func() float64 { return time.Since(rt.started).Seconds() })
	rt.set(p, "hrtime", func() goja.Value {
		ns := time.Now().UnixNano()
		return rt.vm.NewArray(ns/1e9, ns%1e9)
	})
	return p
}

func executablePath() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	return p
}

func realpath(p string) (string, error) {
	abs := p
	if !strings.HasPrefix(p, "/") {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		abs = pathResolve(wd, p)
	}
	return filepath.EvalSymlinks(abs)
}
