package jsconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dop251/goja"
	"github.com/dop251/goja_nodejs/buffer"
	"github.com/dop251/goja_nodejs/eventloop"
	"github.com/dop251/goja_nodejs/require"
)

// jsRuntime is one config evaluation: a goja runtime on a goja_nodejs
// event loop, with the Node built-ins bound to this load. It is only used
// from the loop's goroutine.
type jsRuntime struct {
	vm             *goja.Runtime
	ctx            context.Context
	abs            string
	stdout, stderr io.Writer
	started        time.Time
	modules        map[string]goja.Value
	process        *goja.Object
	console        *goja.Object
	isArrayFn      goja.Callable
	keysFn         goja.Callable
	requireFn      goja.Callable
	errorCtor      *goja.Object
	urlClasses     *urlClasses
	pid, ppid      int // process.pid and process.ppid
}

// outcome is what a load produces: a plan and its issues, or an error.
type outcome struct {
	plan   *Plan
	issues []Issue
	err    error
}

// prelude replaces the timer functions so an exception thrown in a timer
// callback fails the load, as an uncaught exception ends Node, instead of
// being swallowed while the config waits forever.
const prelude = `(function (g) {
  var wrap = function (fn) {
    if (typeof fn !== "function") return fn;
    return function () { try { return fn.apply(this, arguments); } catch (e) { __rollbridgeFail(e); } };
  };
  ["setTimeout", "setInterval", "setImmediate"].forEach(function (name) {
    var original = g[name];
    g[name] = function (fn) { var args = Array.prototype.slice.call(arguments); args[0] = wrap(fn); return original.apply(g, args); };
  });
  g.queueMicrotask = function (fn) { Promise.resolve().then(wrap(fn)); };
  g.process.nextTick = function (fn) { var rest = Array.prototype.slice.call(arguments, 1); Promise.resolve().then(function () { wrap(fn).apply(undefined, rest); }); };
  g.global = g;
  g.structuredClone = function (value) {
    var seen = new Map();
    function clone(v) {
      if (v === null || typeof v !== "object") {
        if (typeof v === "function" || typeof v === "symbol") throw new Error(String(v) + " could not be cloned.");
        return v;
      }
      if (seen.has(v)) return seen.get(v);
      var out;
      if (v instanceof Date) out = new Date(v.getTime());
      else if (v instanceof RegExp) out = new RegExp(v.source, v.flags);
      else if (v instanceof Map) { out = new Map(); seen.set(v, out); v.forEach(function (x, k) { out.set(clone(k), clone(x)); }); return out; }
      else if (v instanceof Set) { out = new Set(); seen.set(v, out); v.forEach(function (x) { out.add(clone(x)); }); return out; }
      else if (Array.isArray(v)) { out = []; seen.set(v, out); v.forEach(function (x, i) { out[i] = clone(x); }); return out; }
      else { out = {}; seen.set(v, out); Object.keys(v).forEach(function (k) { out[k] = clone(v[k]); }); return out; }
      seen.set(v, out);
      return out;
    }
    return clone(value);
  };
})(globalThis);
`

// wrapBundle runs the bundled module graph inside an async function (so
// top-level await works), then takes the default export: a function is called
// once with no arguments and its result awaited; a promise export is awaited
// as well (the Node.js rollbridge does not wait:
// docs/config.md#10-differences-from-the-nodejs-rollbridge, row 10).
func wrapBundle(code string) string {
	return `(async function () {
let __rollbridgeNamespace;
const ` + moduleHook + ` = (ns) => { __rollbridgeNamespace = ns; };
` + code + `
let __rollbridgeValue = __rollbridgeNamespace === undefined ? undefined : __rollbridgeNamespace.default;
if (__rollbridgeValue === undefined) return { missing: true };
if (typeof __rollbridgeValue === "function") __rollbridgeValue = await __rollbridgeValue();
else if (__rollbridgeValue instanceof Promise) __rollbridgeValue = await __rollbridgeValue;
return { value: __rollbridgeValue };
})().then(__rollbridgeFinish, __rollbridgeFail);
`
}

// evaluator is one config evaluation on a goja_nodejs event loop. It is
// started before the config is bundled, so the runtime and its Node
// built-ins are set up on the loop's goroutine while esbuild works; run
// then executes the bundle there. rt and failed belong to the loop's
// goroutine.
type evaluator struct {
	abs    string
	opts   Options
	ctx    context.Context
	cancel context.CancelFunc
	loop   *eventloop.EventLoop
	done   chan outcome
	vm     atomic.Pointer[goja.Runtime]
	rt     *jsRuntime
	failed bool
}

// startEvaluator starts the event loop and queues the runtime's set-up.
// The caller must call run or stop.
func startEvaluator(abs string, deadline time.Time, opts Options) *evaluator {
	e := &evaluator{abs: abs, opts: opts, done: make(chan outcome, 1)}
	e.ctx, e.cancel = context.WithDeadline(context.Background(), deadline)
	e.loop = eventloop.NewEventLoop(eventloop.EnableConsole(false), eventloop.WithRegistry(require.NewRegistry()))
	e.loop.Start()
	e.loop.RunOnLoop(func(vm *goja.Runtime) {
		e.vm.Store(vm)
		e.rt = &jsRuntime{vm: vm, ctx: e.ctx, abs: abs, stdout: opts.stdout(), stderr: opts.stderr(), started: time.Now(), modules: map[string]goja.Value{},
			pid: opts.pid(), ppid: opts.ppid()}
		e.step(func() error {
			e.rt.install(e.finish)
			_, err := vm.RunScript(abs, prelude)
			return err
		})
	})
	return e
}

// finish records the outcome; the first one wins. An outcome reached
// once the deadline has passed is the deadline's error: the deadline is
// what killed a running execSync, and its "Command failed" (or a config
// that caught that and went on) must not be reported in its place.
func (e *evaluator) finish(o outcome) {
	if errors.Is(e.ctx.Err(), context.DeadlineExceeded) {
		o = outcome{err: timeoutError(e.abs, e.opts.timeout())}
	}
	select {
	case e.done <- o:
	default:
	}
}

// step runs one stage on the loop's goroutine, unless an earlier one
// failed; a thrown exception or a panic decides the outcome.
func (e *evaluator) step(stage func() error) {
	if e.failed {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			e.failed = true
			e.finish(outcome{err: e.rt.panicError(r)})
		}
	}()
	if err := stage(); err != nil {
		e.failed = true
		e.finish(outcome{err: e.rt.exceptionError(err)})
	}
}

// run executes the bundled config and decodes its default export, all
// before the deadline, then stops the loop.
func (e *evaluator) run(b *bundled) outcome {
	e.loop.RunOnLoop(func(vm *goja.Runtime) {
		e.step(func() error {
			for name, v := range b.globals {
				e.rt.set(vm.GlobalObject(), name, v)
			}
			_, err := vm.RunScript(e.abs, wrapBundle(b.code))
			return err
		})
	})
	var o outcome
	select {
	case o = <-e.done:
	case <-e.ctx.Done():
		if vm := e.vm.Load(); vm != nil {
			vm.Interrupt(errDeadline)
		}
		o = outcome{err: timeoutError(e.abs, e.opts.timeout())}
	}
	e.stop()
	return o
}

// stop ends any execSync still running and the loop.
func (e *evaluator) stop() {
	e.cancel()
	stopped := make(chan struct{})
	go func() {
		e.loop.Terminate() // clears pending timers, waits for the running job
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		// A native call that ignores the deadline (a read from a FIFO, say)
		// keeps the loop busy; the result is already decided, so move on.
	}
}

var errDeadline = fmt.Errorf("config load deadline reached")

func timeoutError(abs string, d time.Duration) error {
	secs := strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", d.Seconds()), "0"), ".")
	return &LoadError{Message: fmt.Sprintf("Config module %s did not finish loading within %ss", abs, secs)}
}

// install sets up the globals configs may use and the loader's hooks.
func (rt *jsRuntime) install(finish func(outcome)) {
	vm := rt.vm
	buffer.Enable(vm)
	rt.urlClasses = newURLClasses(rt)
	rt.set(vm.GlobalObject(), "URL", rt.urlClasses.urlCtor)
	rt.set(vm.GlobalObject(), "URLSearchParams", rt.urlClasses.paramsCtor)
	rt.requireFn, _ = goja.AssertFunction(vm.Get("require"))
	_ = vm.GlobalObject().Delete("require") // CommonJS require is bundled; ESM has none
	rt.isArrayFn, _ = goja.AssertFunction(vm.Get("Array").ToObject(vm).Get("isArray"))
	rt.keysFn, _ = goja.AssertFunction(vm.Get("Object").ToObject(vm).Get("keys"))
	rt.errorCtor = vm.Get("Error").ToObject(vm)

	rt.process = rt.newProcess()
	rt.console = rt.newConsole()
	rt.set(vm.GlobalObject(), "process", rt.process)
	rt.set(vm.GlobalObject(), "console", rt.console)

	rt.set(vm.GlobalObject(), builtinHook, func(name string) goja.Value { return rt.builtin(name) })
	rt.set(vm.GlobalObject(), "__rollbridgeFail", func(call goja.FunctionCall) goja.Value {
		finish(outcome{err: &LoadError{Message: rt.thrownMessage(call.Argument(0))}})
		return goja.Undefined()
	})
	rt.set(vm.GlobalObject(), "__rollbridgeFinish", func(call goja.FunctionCall) goja.Value {
		defer func() {
			if r := recover(); r != nil {
				finish(outcome{err: rt.panicError(r)})
			}
		}()
		result := call.Argument(0).ToObject(vm)
		if m := result.Get("missing"); m != nil && m.ToBoolean() {
			finish(outcome{err: &LoadError{Message: "Config module " + rt.abs + " must export a default config object or function"}})
			return goja.Undefined()
		}
		plan, issues := decodePlan(value{rt: rt, v: result.Get("value")}, rt.abs)
		finish(outcome{plan: plan, issues: issues})
		return goja.Undefined()
	})
}

// consoleSource builds console.* with Node-like formatting: printf-style
// %s %d %i %f %j %o %O %% directives and util.inspect-like rendering of
// objects ({ a: 1, b: [ 2, 3 ] }), so config debugging output reads as it
// does under Node.
const consoleSource = `(function (write) {
  function inspect(v, depth, seen) {
    if (typeof v === "string") return depth === 0 ? v : "'" + v.replace(/'/g, "\\'") + "'";
    if (typeof v === "function") return "[Function: " + (v.name || "(anonymous)") + "]";
    if (typeof v === "symbol" || typeof v === "bigint") return String(v) + (typeof v === "bigint" ? "n" : "");
    if (v === null || typeof v !== "object") return String(v);
    if (seen.indexOf(v) >= 0) return "[Circular]";
    if (v instanceof Error) return v.stack || String(v);
    if (v instanceof Date) return isNaN(v) ? "Invalid Date" : v.toISOString();
    if (v instanceof RegExp) return String(v);
    if (depth > 2) return Array.isArray(v) ? "[Array]" : "[Object]";
    seen = seen.concat([v]);
    var parts;
    if (Array.isArray(v)) {
      parts = v.map(function (x) { return inspect(x, depth + 1, seen); });
      return parts.length ? "[ " + parts.join(", ") + " ]" : "[]";
    }
    if (v instanceof Map) {
      parts = []; v.forEach(function (x, k) { parts.push(inspect(k, depth + 1, seen) + " => " + inspect(x, depth + 1, seen)); });
      return "Map(" + v.size + ") {" + (parts.length ? " " + parts.join(", ") + " " : "") + "}";
    }
    parts = Object.keys(v).map(function (k) {
      var key = /^[A-Za-z_$][\\w$]*$/.test(k) ? k : "'" + k + "'";
      return key + ": " + inspect(v[k], depth + 1, seen);
    });
    var ctor = Object.getPrototypeOf(v) && Object.getPrototypeOf(v).constructor;
    var prefix = ctor && ctor.name && ctor !== Object ? ctor.name + " " : "";
    return prefix + (parts.length ? "{ " + parts.join(", ") + " }" : "{}");
  }
  function format(args) {
    var first = args[0], rest = Array.prototype.slice.call(args, 1), out;
    if (typeof first === "string") {
      out = first.replace(/%[sdifjoO%]/g, function (m) {
        if (m === "%%") return "%";
        if (!rest.length) return m;
        var a = rest.shift();
        switch (m) {
          case "%s": return typeof a === "string" ? a : inspect(a, 1, []);
          case "%d": return String(Number(a));
          case "%i": return String(parseInt(a, 10));
          case "%f": return String(parseFloat(a));
          case "%j": try { return JSON.stringify(a); } catch (e) { return "[Circular]"; }
          default: return inspect(a, 1, []);
        }
      });
    } else {
      out = inspect(first, 0, []);
    }
    return [out].concat(rest.map(function (a) { return inspect(a, 0, []); })).join(" ");
  }
  var c = {};
  ["log", "info", "debug", "trace"].forEach(function (n) { c[n] = function () { write(1, format(arguments)); }; });
  ["error", "warn"].forEach(function (n) { c[n] = function () { write(2, format(arguments)); }; });
  return c;
})`

func (rt *jsRuntime) newConsole() *goja.Object {
	factory, err := rt.vm.RunString(consoleSource)
	if err != nil {
		panic(err)
	}
	fn, _ := goja.AssertFunction(factory)
	c, err := fn(goja.Undefined(), rt.vm.ToValue(func(stream int, text string) {
		w := rt.stdout
		if stream == 2 {
			w = rt.stderr
		}
		_, _ = io.WriteString(w, text+"\n")
	}))
	if err != nil {
		panic(err)
	}
	return c.ToObject(rt.vm)
}

func (rt *jsRuntime) isArray(o *goja.Object) bool {
	r, err := rt.isArrayFn(goja.Undefined(), o)
	return err == nil && r.ToBoolean()
}

func (rt *jsRuntime) objectKeys(o *goja.Object) []string {
	r, err := rt.keysFn(goja.Undefined(), o)
	if err != nil {
		panic(err)
	}
	var keys []string
	if err := rt.vm.ExportTo(r, &keys); err != nil {
		panic(err)
	}
	return keys
}

// esmOnlyGlobal matches a ReferenceError for a CommonJS-only name used in
// an ES module; __dirname and __filename appear under their per-file names.
var esmOnlyGlobal = regexp.MustCompile(`^(module|exports|require|__dirname|__filename|__rollbridge(Dirname|Filename)\d+) is not defined$`)

var perFileGlobal = regexp.MustCompile(`^__rollbridge(Dirname|Filename)\d+`)

// thrownMessage is the load-error text for a thrown value: an Error's
// message, or the value converted to a string
// (docs/config.md#25-load-errors-and-the-time-limit).
func (rt *jsRuntime) thrownMessage(v goja.Value) (msg string) {
	defer func() {
		if recover() != nil {
			msg = "Config module " + rt.abs + " threw a value that cannot be converted to a string"
		}
	}()
	if o, ok := v.(*goja.Object); ok && rt.vm.InstanceOf(o, rt.errorCtor) {
		msg = o.Get("message").String()
		// CommonJS names do not exist in ES module code; say so as Node does.
		if name := o.Get("name"); name != nil && name.String() == "ReferenceError" && esmOnlyGlobal.MatchString(msg) {
			msg = perFileGlobal.ReplaceAllStringFunc(msg, func(g string) string {
				if strings.Contains(g, "Dirname") {
					return "__dirname"
				}
				return "__filename"
			})
			msg += " in ES module scope"
			if strings.HasPrefix(msg, "require ") {
				msg += ", you can use import instead"
			}
		}
		return msg
	}
	if v == nil {
		return "undefined"
	}
	return v.String()
}

func (rt *jsRuntime) exceptionError(err error) error {
	switch e := err.(type) {
	case *goja.Exception:
		return &LoadError{Message: rt.thrownMessage(e.Value())}
	case *goja.InterruptedError:
		return &LoadError{Message: "config evaluation was interrupted"}
	}
	return &LoadError{Message: err.Error()}
}

// panicError converts a panic escaping JavaScript or the decoder (a getter
// that throws, an interrupted runtime) into a load error.
func (rt *jsRuntime) panicError(r any) error {
	switch e := r.(type) {
	case *goja.Exception:
		return &LoadError{Message: rt.thrownMessage(e.Value())}
	case *goja.InterruptedError:
		return &LoadError{Message: "config evaluation was interrupted"}
	case goja.Value:
		return &LoadError{Message: rt.thrownMessage(e)}
	case error:
		return &LoadError{Message: e.Error()}
	}
	return &LoadError{Message: fmt.Sprint(r)}
}
