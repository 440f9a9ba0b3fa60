package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/proxy"
	"github.com/rollbridge/rollbridge/runtime"
)

// connectionGrace bounds how long a finished shutdown waits for control
// connections to write their last replies.
const connectionGrace = 10 * time.Second

// Options configure a daemon.
type Options struct {
	// ConfigPath is the absolute config path, reloaded before every deploy.
	ConfigPath string
	// Plan is the config the daemon starts with.
	Plan *jsconfig.Plan
	// Stdout receives the JSON log, one event per line.
	Stdout io.Writer
	// Stderr receives a reloaded config's console output.
	Stderr io.Writer
	// Identity is reported as status.daemonRuntime.
	Identity Identity
	// Bootstrap, when set, is activated before the control socket is
	// exposed (docs/cli.md#bootstrap-starting-with-a-known-release); with
	// Takeover the daemon replaces the current owner of the control socket
	// (docs/cli.md#takeover-replacing-the-running-daemon).
	Bootstrap *Bootstrap
	Takeover  bool
	// MetricsAddress, when set, serves Prometheus metrics on /metrics.
	MetricsAddress string
	// LoadConfig reloads the config before a deploy; nil loads it in
	// process with jsconfig.Load.
	LoadConfig func() (*jsconfig.Plan, error)
	// PIDFile is the pid file ensure-daemon wrote for this daemon (see
	// EnsuredPIDFileEnv), or "". Serve removes it when the daemon ends
	// after a shutdown, a signal or a retirement, if it still names this
	// daemon.
	PIDFile string
}

// Engine is the daemon: it owns the releases, services and singletons,
// drives their processes, and serves the proxy and the control socket.
type Engine struct {
	opts   Options
	events *eventLog
	proxy  *proxy.Proxy
	ops    opLock

	ctx      context.Context // cancelled when a shutdown begins
	cancel   context.CancelFunc
	stopping atomic.Bool

	// mu guards the model below. It is never held while waiting (health
	// checks, stops, hooks) and never while calling into a process.
	mu           sync.Mutex
	plan         *jsconfig.Plan
	releases     []*Release // status order; ids are unique
	active       *Release
	starting     map[*Release]struct{}
	retiring     map[*Release]struct{} // superseded by a same-id deploy, still draining
	services     []*serviceEntry
	servicePorts map[string]int
	singletons   []*singletonEntry
	proxyPort    int
	orphans      []Orphan // live processes of a previous daemon (docs/cli.md#orphans)
	traffic      trafficState
	persist      *persister  // nil without statePath
	readoption   *readoption // what this daemon re-adopted at start-up, or nil
	// readoptRestarts are re-adopted instances whose process died while
	// no daemon ran, started once the orphans are recorded.
	readoptRestarts []*instance
	fds             *fdStore // systemd's file descriptor store (empty without systemd)
	// storedControl is the control listener systemd passed back, checked
	// to still be the socket at control.path; nil when there is none.
	storedControl *controlSocket

	server       *control.Server
	socket       *controlSocket
	proxyLn      net.Listener
	logHub       logHub
	metrics      *metrics // nil without Options.MetricsAddress
	retiredOwner bool     // handed over to a takeover candidate (guarded by mu)
	retirement   retirement
	// failed is set when a listener stopped serving unexpectedly: the
	// daemon shuts down and Serve returns it, so the process exits
	// non-zero and its supervisor starts it again.
	failed   atomic.Pointer[error]
	failOnce sync.Once
	// launchFailed is set when a bootstrap or takeover failed: the exit is
	// a failure its supervisor retries, with the stored listeners.
	launchFailed atomic.Bool
	shutdown     struct {
		once sync.Once
		done chan struct{}
		err  error
	}
}

// New prepares a daemon for opts; Start binds its listeners.
func New(opts Options) *Engine {
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		opts:         opts,
		events:       newEventLog(opts.Stdout),
		ctx:          ctx,
		cancel:       cancel,
		plan:         opts.Plan,
		starting:     map[*Release]struct{}{},
		retiring:     map[*Release]struct{}{},
		servicePorts: map[string]int{},
		proxyPort:    opts.Plan.Proxy.Port,
	}
	e.shutdown.done = make(chan struct{})
	e.fds = &fdStore{e: e}
	e.retirement.done = make(chan struct{})
	e.logHub.followers = map[*follower]struct{}{}
	popts := proxy.Options{OnError: newErrorSummary("proxy error", e.events.log).add}
	if opts.MetricsAddress != "" {
		e.metrics = newMetrics(e)
		popts.Idle = e.metrics.observer("")
	}
	e.proxy = proxy.New(popts)
	e.server = control.NewServer(e)
	e.server.OnCommandError = func(err error) {
		// The message stays the one line the reply carries; a reload
		// refusal's differences go in a field of their own.
		var reload *jsconfig.ReloadError
		if errors.As(err, &reload) {
			e.events.log("command failed", append(reload.ReplyFields(), jsconfig.Field{Key: "error", Value: err.Error()})...)
			return
		}
		e.events.log("command failed", jsconfig.Field{Key: "error", Value: err.Error()})
	}
	e.server.OnConnError = func(code, msg string) {
		var c any
		if code != "" {
			c = code
		}
		e.events.log("control connection error", jsconfig.Field{Key: "code", Value: c}, jsconfig.Field{Key: "error", Value: msg})
	}
	return e
}

// Start brings up a plain daemon (docs/cli.md#start-up): the control socket
// is probed for a live daemon first, then the previous daemon's orphans are
// reported and the proxy and the control socket are bound.
func (e *Engine) Start() error {
	if err := e.prepare(); err != nil {
		return err
	}
	sock, err := e.controlListener()
	if err != nil {
		e.proxy.Shutdown(0)
		e.metrics.close()
		return err
	}
	return e.exposeControl(sock)
}

// prepare is the common start of a plain and a bootstrap daemon: take
// what systemd kept in its file descriptor store, refuse to run next to
// a live daemon, bind the metrics listener, read the previous state file,
// bind the proxy (holding requests while a re-adoption checks the active
// release), then re-adopt what the previous daemon left running and
// report the rest as orphans. A plain daemon starts persisting once the
// control socket is up, a bootstrap before it starts its release.
func (e *Engine) prepare() error {
	plan := e.opts.Plan
	e.fds = openFDStore(e)
	defer e.fds.closeUnused()
	// A control socket systemd kept is this unit's own: the daemon that
	// bound it is gone (systemd restarts a unit only after its main
	// process ended), so there is nobody to ask.
	if e.storedControl = e.fds.storedControl(plan.Control.Path); e.storedControl == nil {
		if err := CheckControlSocket(plan.Control); err != nil {
			return err
		}
	}
	fail := func(err error) error {
		if e.storedControl != nil {
			e.storedControl.listener.Close()
		}
		return err
	}
	if err := e.serveMetrics(); err != nil {
		return fail(err)
	}
	var saved *savedState
	var entries []Orphan
	if plan.StatePath != "" {
		e.persist = newPersister(e, plan.StatePath)
		saved, entries = e.loadState(plan.StatePath)
		e.holdForReadoption(saved)
	}
	if err := e.bindProxy(); err != nil {
		e.metrics.close()
		return fail(err)
	}
	e.addOrphans(e.readopt(saved, entries))
	e.restartReadopted()
	return nil
}

// controlListener is the control socket: the one systemd kept, or a new
// one.
func (e *Engine) controlListener() (*controlSocket, error) {
	if s := e.storedControl; s != nil {
		e.storedControl = nil
		return s, nil
	}
	return listenControl(e.opts.Plan.Control)
}

// Shutdown stops everything the daemon owns (docs/cli.md#shutdown) and
// reports what failed. Every caller shares one run. requester's connection is
// kept open for its reply.
func (e *Engine) Shutdown(requester *control.Conn) error {
	e.shutdown.once.Do(func() {
		go func() {
			e.shutdown.err = e.runShutdown(requester)
			close(e.shutdown.done)
		}()
	})
	<-e.shutdown.done
	return e.shutdown.err
}

func (e *Engine) runShutdown(requester *control.Conn) error {
	// 1: no new deploy steps; waits end; queued operations are refused.
	e.mu.Lock()
	e.stopping.Store(true)
	sock, retired := e.socket, e.retiredOwner
	e.mu.Unlock()
	e.notify("STOPPING=1")
	if e.failure() == nil && !e.launchFailed.Load() {
		// A deliberate stop: systemd's copies would keep the listeners
		// open after the daemon closed them, and clients would wait in
		// the backlog instead of being refused. A failure (a listener,
		// a bootstrap) keeps them for the restart that follows.
		e.fds.remove(fdProxy, fdControl, fdMetrics)
	}
	e.cancel()
	e.ops.close()
	e.metrics.close()
	// 2–3: no new control connections; the socket file goes, unless a
	// takeover candidate now serves it.
	var errs []string
	e.server.Close(requester)
	if sock != nil && !retired {
		sock.listener.Close()
		if err := sock.remove(); err != nil {
			errs = append(errs, "control socket unlink failed: "+err.Error())
		}
	}
	// 4: no more periodic state writes (the final one follows below).
	if e.persist != nil {
		e.persist.stopTimer()
	}
	// 5: stop everything, in parallel.
	e.mu.Lock()
	var releases []*Release
	releases = append(releases, e.releases...)
	for r := range e.starting {
		releases = append(releases, r)
	}
	for r := range e.retiring {
		releases = append(releases, r)
	}
	e.mu.Unlock()
	stopAll(e.ownedProcesses())
	e.mu.Lock()
	for _, r := range releases {
		if r.live() {
			r.setState(stateStopped)
			r.stoppedAt = time.Now()
		}
	}
	e.mu.Unlock()
	// 6: close the proxy; open client connections get a grace period.
	if err := e.proxy.Shutdown(proxy.ShutdownGrace); err != nil {
		errs = append(errs, "proxy close failed: "+err.Error())
	}
	// 7: the state file keeps only inherited orphans that still run.
	if e.persist != nil && e.persist.started && !retired {
		if err := e.persist.finish(); err != nil {
			errs = append(errs, "persistent state cleanup failed: "+err.Error())
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// serveMetrics starts the metrics listener when one is configured.
func (e *Engine) serveMetrics() error {
	if e.metrics == nil {
		return nil
	}
	return e.metrics.serve(e.opts.MetricsAddress)
}

// startInstance starts a process unless a shutdown or retirement has
// begun: a start racing with the final stop must not leave a process
// behind.
func (e *Engine) startInstance(in *instance, reason string) error {
	return in.proc.StartUnless(reason, e.stopping.Load)
}

// stopAll runs the stop sequence of every instance in parallel and waits.
func stopAll(procs []*instance) {
	var wg sync.WaitGroup
	for _, in := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.proc.Stop()
		}()
	}
	wg.Wait()
}

// processEvent tags a process's event with its instance id and release,
// and counts restarts for the metrics.
func (e *Engine) processEvent(in *instance) func(runtime.Event) {
	return func(ev runtime.Event) {
		data := make(jsconfig.Object, 0, len(ev.Data)+2)
		data = append(data, jsconfig.Field{Key: "processId", Value: in.id}, jsconfig.Field{Key: "releaseId", Value: in.releaseTag()})
		for _, f := range ev.Data {
			data = append(data, jsconfig.Field{Key: f.Key, Value: f.Value})
			if e.metrics != nil && ev.Message == "process started" && f.Key == "reason" {
				if reason, _ := f.Value.(string); reason != runtime.ReasonDeploy {
					e.metrics.restarts.inc(in.id, reason)
				}
			}
		}
		e.events.log(ev.Message, data...)
	}
}

// currentPlan returns the config in force.
func (e *Engine) currentPlan() *jsconfig.Plan {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.plan
}

// serveListener runs the Serve loop of one of the daemon's listeners.
// Temporary accept errors never end such a loop (keepAccepting), so when
// it ends while the daemon is not stopping, the listener is broken for
// good, and broken is told. For the proxy and the control socket that is
// fail: rather than live on deaf, the daemon shuts down with an error.
func (e *Engine) serveListener(serve func() error, broken func(error)) {
	go func() {
		err := serve()
		if err == nil || errors.Is(err, http.ErrServerClosed) || e.stopping.Load() {
			return // closed on purpose
		}
		broken(err)
	}()
}

// fail shuts the daemon down because one of its listeners failed; Serve
// then returns the cause.
func (e *Engine) fail(listener string, cause error) {
	e.failOnce.Do(func() {
		text := acceptErrorText(cause)
		err := fmt.Errorf("The %s listener stopped accepting connections (%s); the daemon stopped its processes and exits so that its supervisor can start it again.", listener, text)
		e.failed.Store(&err)
		e.events.log("listener failed", jsconfig.Field{Key: "error", Value: text}, jsconfig.Field{Key: "listener", Value: listener})
		// The next start must bind it anew, not get the broken one back.
		e.fds.remove(listener)
		go e.Shutdown(nil)
	})
}

// failure is the error a failed listener left, or nil.
func (e *Engine) failure() error {
	if p := e.failed.Load(); p != nil {
		return *p
	}
	return nil
}
