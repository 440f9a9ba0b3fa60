package engine

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
	"golang.org/x/sys/unix"
)

// DeployRequest is a deploy (or rollback) of one release directory.
type DeployRequest struct {
	ReleasePath string
	ReleaseID   string // "" lets the daemon choose
	Revision    string
	RevisionSet bool // a revision was supplied, even ""
	// HoldTraffic holds new requests between the health check and the
	// switch (deploy --hold-traffic), for at most MaxPause, while the
	// requests in flight finish and BeforeSwitch ("" for none) runs.
	HoldTraffic  bool
	BeforeSwitch string
	MaxPause     time.Duration
	// deferSingletons leaves the singletons to the caller: a takeover
	// candidate starts them once the owner's have stopped.
	deferSingletons bool
}

// namedID is the release id the request names: its releaseId, else its
// revision; "" when it names neither (the deploy then makes one up).
func (r DeployRequest) namedID() string {
	if r.ReleaseID != "" {
		return r.ReleaseID
	}
	return r.Revision
}

// DeployResult is the reply of a successful deploy.
type DeployResult struct {
	ActiveReleaseID   string
	PreviousReleaseID *string
}

// deploy runs the deploy flow (docs/cli.md#what-the-daemon-does) under the
// operation lock.
func (e *Engine) deploy(req DeployRequest) (res DeployResult, err error) {
	began := time.Now()
	defer func() {
		if err == nil {
			e.persist.request()
		}
		if m := e.metrics; m != nil {
			m.deploys.inc(result(err))
			m.deployT.observe(time.Since(began).Seconds(), result(err))
		}
	}()
	if e.stopping.Load() {
		return DeployResult{}, ErrShuttingDown
	}
	// 2: reload the config and refuse what cannot change live.
	next, err := e.loadConfig()
	if err != nil {
		return DeployResult{}, err
	}
	if err := jsconfig.CheckReload(e.currentPlan(), next); err != nil {
		return DeployResult{}, err
	}
	// 3: the release.
	id := req.namedID()
	if id == "" {
		id = timestampID(time.Now())
	}
	e.ops.setRelease(id) // for the operations command
	revision := req.Revision
	if revision == "" {
		revision = id
	}
	r := newRelease(id, req.ReleasePath, revision)
	e.mu.Lock()
	e.starting[r] = struct{}{}
	e.mu.Unlock()
	fields := []jsconfig.Field{{Key: "releaseId", Value: id}, {Key: "releasePath", Value: req.ReleasePath}}
	if req.RevisionSet {
		fields = append(fields, jsconfig.Field{Key: "revision", Value: req.Revision})
	}
	e.events.log("deploy starting", fields...)

	// 4–5: ports and missing persistent services.
	var services []*serviceEntry
	ports, err := e.allocatePorts(next)
	if err == nil {
		e.mu.Lock()
		r.ports = ports
		e.mu.Unlock()
		err = e.checkSingletonTemplates(next, r)
	}
	if err == nil {
		services, err = e.ensureServices(next, r)
	}
	if err != nil {
		return DeployResult{}, e.failDeploy(r, unrecordedDeploy(err), false, services)
	}
	// 6–8: the release's processes and the health check.
	if err := e.startReleaseProcesses(next, r); err != nil {
		return DeployResult{}, e.failDeploy(r, unrecordedDeploy(err), true, services)
	}
	// 8½: deploy --hold-traffic: hold, wait for the requests in flight,
	// run the --before-switch command. A failure lifts the hold with the
	// previous release still active.
	lift := func() {}
	if req.HoldTraffic {
		if lift, err = e.holdBeforeSwitch(next, r, req); err != nil {
			return DeployResult{}, e.failDeploy(r, err, false, services)
		}
		// Whatever happens from here, the hold ends with this deploy.
		defer lift()
	}
	// 9: activate.
	prev, err := e.activate(next, r)
	lift() // held requests go to the new release (the old one if activate failed)
	if err != nil {
		return DeployResult{}, e.failDeploy(r, err, true, services)
	}
	result := DeployResult{ActiveReleaseID: r.ID}
	if prev != nil {
		result.PreviousReleaseID = &prev.ID
	}
	// 10–12.
	e.refreshServices(next, r)
	var singletonErr error
	if !req.deferSingletons {
		singletonErr = e.replaceSingletons(next, r)
	}
	if prev != nil {
		go e.drain(prev, next)
	}
	return result, singletonErr
}

func (e *Engine) loadConfig() (*jsconfig.Plan, error) {
	if e.opts.LoadConfig != nil {
		return e.opts.LoadConfig()
	}
	return jsconfig.Load(e.opts.ConfigPath, jsconfig.Options{Stdout: e.opts.Stderr, Stderr: e.opts.Stderr})
}

// timestampID is the default release id: the digits of the UTC ISO time,
// YYYYMMDDhhmmssSSS.
func timestampID(t time.Time) string {
	return strings.ReplaceAll(t.UTC().Format("20060102150405.000"), ".", "")
}

// startReleaseProcesses starts handoff services, companions (replicas in
// order) and the proxied process, then health-checks the proxied one. The
// processes are spawned held, recorded in the state file with one write,
// and only then released, in start order: a deploy costs one write, not
// one per process, and none of them runs unrecorded.
func (e *Engine) startReleaseProcesses(plan *jsconfig.Plan, r *Release) error {
	var held []func(run bool)
	// drop lets the held children go without running them: the deploy
	// failed before they were recorded, and a worker must not take a job
	// in the moment before the clean-up stops it.
	drop := func() {
		for _, release := range held {
			release(false)
		}
	}
	if err := e.spawnReleaseProcesses(plan, r, &held); err != nil {
		drop()
		return err
	}
	if werr := e.persist.sync(); werr != nil {
		drop()
		return &unrecordedError{what: "the processes of release " + r.ID, path: e.persist.main, err: werr}
	}
	for _, release := range held {
		release(true)
	}
	return e.checkReleaseHealth(plan, r)
}

// spawnReleaseProcesses spawns the release's processes held, in start
// order, adding each release function to held.
func (e *Engine) spawnReleaseProcesses(plan *jsconfig.Plan, r *Release, held *[]func(run bool)) error {
	for _, def := range releaseStartOrder(plan) {
		for replica := 0; replica < def.Replicas; replica++ {
			in, err := e.buildInstance(plan, r, def, replica, e.releaseGate(r))
			if err != nil {
				return err
			}
			e.mu.Lock()
			if e.stopping.Load() {
				e.mu.Unlock()
				return ErrShuttingDown
			}
			r.procs = append(r.procs, in)
			e.mu.Unlock()
			release, err := in.proc.StartHeld(runtime.ReasonDeploy, e.stopping.Load)
			if err != nil {
				return err
			}
			if release != nil {
				*held = append(*held, release)
			}
		}
	}
	return nil
}

// releaseStartOrder lists the processes of a release in start order:
// handoff services, companions, then the proxied process.
func releaseStartOrder(plan *jsconfig.Plan) []*jsconfig.Process {
	order := []func(*jsconfig.Process) bool{
		func(p *jsconfig.Process) bool {
			return p.Policy == jsconfig.PolicyService && p.DeployStrategy == jsconfig.StrategyHandoff
		},
		func(p *jsconfig.Process) bool { return p.Policy == jsconfig.PolicyCompanion },
		func(p *jsconfig.Process) bool { return p.Policy == jsconfig.PolicyProxied },
	}
	var out []*jsconfig.Process
	for _, matches := range order {
		for i := range plan.Processes {
			if def := &plan.Processes[i]; matches(def) {
				out = append(out, def)
			}
		}
	}
	return out
}

// checkReleaseHealth health-checks the release's proxied process.
func (e *Engine) checkReleaseHealth(plan *jsconfig.Plan, r *Release) error {
	web := plan.ProxiedProcess()
	if check, ok := webHealthCheck(plan, portOf(r.ports, web.ID)); ok {
		// Fail fast: a web process that exited for good, or exited again
		// before it ever answered, ends the check at once.
		in := e.webInstance(r, web)
		if in != nil {
			stop := make(chan struct{})
			defer close(stop)
			check.GiveUp = watchWebCrashes(in, stop)
		}
		checked := time.Now()
		err := check.Check(e.ctx)
		if m := e.metrics; m != nil {
			m.health.observe(time.Since(checked).Seconds(), result(err))
		}
		if err == nil && in != nil {
			err = checkWebListener(in.id, in.proc.PID(), check)
		}
		if err != nil {
			if e.stopping.Load() {
				return ErrShuttingDown
			}
			return err
		}
	}
	if e.stopping.Load() {
		return ErrShuttingDown
	}
	return nil
}

// webHealthCheck is the health check of plan's web process on port;
// ok is false when the config gives it none.
func webHealthCheck(plan *jsconfig.Plan, port int) (check runtime.HealthCheck, ok bool) {
	h := plan.ProxiedProcess().Health
	check = runtime.HealthCheck{Host: plan.Proxy.UpstreamHost, Port: port}
	if h == nil {
		return check, false
	}
	check.Path, check.Timeout, check.Interval, check.StartDelay = h.Path, h.TimeoutMs.Duration(), h.IntervalMs.Duration(), h.StartDelayMs.Duration()
	return check, true
}

// checkWebListener makes sure that the answer to the health check came
// from the web process id (pid, 0 when it no longer runs): it must still
// run, and the port must be listened on by its user (or root). Otherwise
// another process, such as another local user's server that took the
// port first, would get the release's traffic.
func checkWebListener(id string, pid int, check runtime.HealthCheck) error {
	err := runtime.ErrNotRunning
	if pid != 0 {
		err = runtime.CheckPortOwner(pid, check.Port)
	}
	if err == nil {
		return nil
	}
	reason := fmt.Sprintf("the answer did not come from %s: %s", id, err.Error())
	var owner *runtime.PortOwnerError
	if errors.As(err, &owner) {
		reason += fmt.Sprintf(`; another local user may have taken the port first (see "ss -ltnp 'sport = :%d'")`, check.Port)
	} else {
		reason += fmt.Sprintf(` (it exited; "rollbridge logs --process %s" shows why)`, id)
	}
	return &runtime.HealthError{URL: check.URL(), Reason: reason}
}

// webInstance is the instance of the proxied process web in release r,
// or nil.
func (e *Engine) webInstance(r *Release, web *jsconfig.Process) *instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	var in *instance
	for _, p := range r.procs {
		if p.def.ID == web.ID {
			in = p
		}
	}
	return in
}

// activate switches traffic to r and makes the reloaded config the one in
// force. It returns the previous active release, now draining.
func (e *Engine) activate(plan *jsconfig.Plan, r *Release) (*Release, error) {
	target := e.newTarget(plan, r, portOf(r.ports, plan.ProxiedProcess().ID))
	e.mu.Lock()
	if e.stopping.Load() {
		e.mu.Unlock()
		return nil, ErrShuttingDown
	}
	prev := e.active
	e.plan = plan
	replaced := false
	for i, old := range e.releases {
		if old.ID == r.ID {
			// Same id: the new release takes the old entry's place; the old
			// object is tracked until its processes stopped
			// (docs/workers.md#6-release-retention-and-re-used-release-ids).
			e.releases[i] = r
			if old.live() {
				e.retiring[old] = struct{}{}
			}
			replaced = true
			break
		}
	}
	if !replaced {
		e.releases = append(e.releases, r)
	}
	delete(e.starting, r)
	now := time.Now()
	r.setState(stateActive)
	r.activatedAt = now
	r.target = target
	e.active = r
	if prev != nil {
		prev.setState(stateDraining) // from now on nothing of it restarts
		prev.drainStartedAt = now
	}
	e.mu.Unlock()
	e.proxy.SetActive(target)
	var prevID any
	if prev != nil {
		prevID = prev.ID
	}
	e.events.log("traffic switched", jsconfig.Field{Key: "previousReleaseId", Value: prevID}, jsconfig.Field{Key: "releaseId", Value: r.ID})
	return prev, nil
}

// failDeploy cleans up a deploy that did not activate
// (docs/cli.md#what-the-daemon-does): the new release's processes and the
// services it started are stopped; the previous release keeps serving.
func (e *Engine) failDeploy(r *Release, cause error, inStart bool, services []*serviceEntry) error {
	msg := cause.Error()
	e.mu.Lock()
	procs := append([]*instance(nil), r.procs...)
	e.mu.Unlock()
	failed := []jsconfig.Field{{Key: "error", Value: msg}}
	if inStart {
		r.setState(stateFailed)
		// What the processes went through, taken before the clean-up
		// stops them (docs/cli.md#deploy).
		cause = failureReport(cause, procs)
		var report *DeployFailure
		if errors.As(cause, &report) {
			failed = append(failed, jsconfig.Field{Key: "processes", Value: report.Processes})
		}
		e.startupDiagnostics(r, procs, msg, "before cleanup")
		stopAll(procs)
		e.startupDiagnostics(r, procs, msg, "after cleanup")
	}
	e.events.log("deploy failed", append(failed, jsconfig.Field{Key: "releaseId", Value: r.ID})...)
	stopAll(procs)
	for _, s := range services {
		s.inst.proc.Stop()
		e.mu.Lock()
		e.forgetServiceLocked(s)
		e.mu.Unlock()
	}
	e.mu.Lock()
	r.setState(stateStopped)
	r.stoppedAt = time.Now()
	delete(e.starting, r)
	e.mu.Unlock()
	return cause
}

// startupDiagnostics logs why a release failed to start, with each of its
// processes' state and retained output.
func (e *Engine) startupDiagnostics(r *Release, procs []*instance, msg, phase string) {
	e.events.log("release startup failed", jsconfig.Field{Key: "error", Value: msg}, jsconfig.Field{Key: "phase", Value: phase}, jsconfig.Field{Key: "releaseId", Value: r.ID})
	for _, in := range procs {
		s := in.proc.Status()
		var code, signal, pid any
		if s.Exited && s.ExitCode != nil {
			code = *s.ExitCode
		}
		if s.Exited && s.ExitSignal != nil {
			signal = *s.ExitSignal
		}
		if s.PID != 0 {
			pid = s.PID
		}
		logs := s.Logs
		if logs == nil {
			logs = []runtime.OutputEntry{}
		}
		e.events.log("release startup process status",
			jsconfig.Field{Key: "command", Value: s.Command}, jsconfig.Field{Key: "exitCode", Value: code},
			jsconfig.Field{Key: "exitSignal", Value: signal}, jsconfig.Field{Key: "logs", Value: logs},
			jsconfig.Field{Key: "phase", Value: phase}, jsconfig.Field{Key: "pid", Value: pid},
			jsconfig.Field{Key: "processId", Value: in.id}, jsconfig.Field{Key: "releaseId", Value: r.ID},
			jsconfig.Field{Key: "state", Value: string(s.State)})
	}
}

// buildInstance renders one instance of def for release r and creates
// its managed process (not started).
func (e *Engine) buildInstance(plan *jsconfig.Plan, r *Release, def *jsconfig.Process, replica int, gate func() bool) (*instance, error) {
	in, spec, err := e.renderInstance(plan, r, def, replica, gate)
	if err != nil {
		return nil, err
	}
	in.proc = runtime.New(spec, e.instanceOptions(in))
	return in, nil
}

// renderInstance renders one instance of def for release r, without its
// process.
func (e *Engine) renderInstance(plan *jsconfig.Plan, r *Release, def *jsconfig.Process, replica int, gate func() bool) (*instance, runtime.Spec, error) {
	id := def.ID
	if def.Replicas > 1 {
		id = fmt.Sprintf("%s#%d", def.ID, replica)
	}
	spec, err := e.renderSpec(plan, r, def, replica, id, gate)
	if err != nil {
		return nil, runtime.Spec{}, err
	}
	in := &instance{id: id, def: def, replica: replica}
	in.setTag(r.ID)
	return in, spec, nil
}

// instanceOptions connect in's process to the daemon: events, output,
// the state file and systemd's file descriptor store.
func (e *Engine) instanceOptions(in *instance) runtime.Options {
	return runtime.Options{
		OnEvent:  e.processEvent(in),
		OnOutput: func(entry runtime.OutputEntry) { e.publishOutput(in, entry) },
		OnSpawn:  e.recordSpawn(in),
		OnPipes:  e.fds.pipes,
	}
}

// recordSpawn writes the state file before a new child of in runs (its
// command or a hook), so a crash at any moment leaves it on record. A
// failed write of the command's spawn is kept for startRecorded; for
// restarts and hooks it is only logged ("state persist failed").
func (e *Engine) recordSpawn(in *instance) func(runtime.Spawn) {
	return func(s runtime.Spawn) {
		err := e.persist.sync()
		if s.Hook != "" {
			return
		}
		if err != nil {
			in.unrecorded.Store(&unrecordedError{what: in.id, path: e.persist.main, err: err})
		} else {
			in.unrecorded.Store(nil)
		}
	}
}

// unrecordedError is a process that runs but could not be recorded in
// the state file.
type unrecordedError struct {
	what, path string // what: "worker#0", "the processes of release v2"
	err        error
}

func (u *unrecordedError) Error() string {
	return fmt.Sprintf("Could not record %s in the state file %s: %s.", u.what, u.path, u.err.Error())
}

// startRecorded starts a process for a deploy step, which is never
// acknowledged with processes that are not on record: a start whose
// state file write failed is an error (the process runs; the caller
// stops it).
func (e *Engine) startRecorded(in *instance, reason string) error {
	if err := e.startInstance(in, reason); err != nil {
		return err
	}
	if u := in.unrecorded.Load(); u != nil {
		return u
	}
	return nil
}

// unrecordedDeploy explains a deploy called off because its processes
// could not be recorded.
func unrecordedDeploy(err error) error {
	var u *unrecordedError
	if !errors.As(err, &u) {
		return err
	}
	return fmt.Errorf("%s The deploy was called off: its processes were stopped and the previous release keeps serving. Make sure the directory of the state file exists and the daemon can write it (rollbridge doctor checks it), then deploy again.", u.Error())
}

// checkSingletonTemplates renders every singleton before anything starts:
// singletons start only after the switch, and a template that cannot
// render must fail the deploy while the previous release still serves.
func (e *Engine) checkSingletonTemplates(plan *jsconfig.Plan, r *Release) error {
	for i := range plan.Processes {
		def := &plan.Processes[i]
		if def.Policy != jsconfig.PolicySingleton {
			continue
		}
		if _, err := e.renderSpec(plan, r, def, 0, def.ID, nil); err != nil {
			return err
		}
	}
	return nil
}

// renderSpec renders def for release r into a process definition.
func (e *Engine) renderSpec(plan *jsconfig.Plan, r *Release, def *jsconfig.Process, replica int, id string, gate func() bool) (runtime.Spec, error) {
	rendered, err := RenderProcess(def, e.templateContext(plan, r, def, replica), processEnviron())
	if err != nil {
		return runtime.Spec{}, err
	}
	return processSpec(def, id, rendered, gate), nil
}

// templateContext is what def's templates see in release r.
func (e *Engine) templateContext(plan *jsconfig.Plan, r *Release, def *jsconfig.Process, replica int) *TemplateContext {
	e.mu.Lock()
	ports := append([]PortAssignment(nil), r.ports...)
	e.mu.Unlock()
	c := &TemplateContext{
		Application: plan.Application, ReleaseID: r.ID, ReleasePath: r.Path, Revision: r.Revision,
		ProcessID: def.ID, ReplicaIndex: replica, ReplicaCount: def.Replicas, Ports: ports,
		Proxy: plan.Proxy, LookupEnv: os.LookupEnv,
	}
	if def.Port != nil {
		port := portOf(ports, def.ID)
		c.Port = &port
	}
	return c
}

// processSpec turns a config process and its rendering into a runtime spec.
func processSpec(def *jsconfig.Process, id string, r *RenderedProcess, gate func() bool) runtime.Spec {
	spec := runtime.Spec{
		ID: id, Command: r.Command, ShownCommand: r.ShownCommand, Dir: r.Dir, Cwd: r.Cwd, Env: r.Env,
		StopSignal:   signalNumber(def.StopSignal),
		GracefulStop: def.GracefulStop.Ms.Duration(),
		Indefinite:   def.GracefulStop.Indefinite,
		Lifecycle: runtime.Lifecycle{
			QuietCommand: deref(def.Lifecycle.QuietCommand),
			DrainCommand: deref(def.Lifecycle.DrainCommand),
			StopCommand:  deref(def.Lifecycle.StopCommand),
			DrainTimeout: def.Lifecycle.DrainTimeoutMs.Duration(),
		},
		Restart: runtime.RestartPolicy{
			Delay: def.RestartDelayMs.Duration(), MaxRestarts: def.Restart.MaxRestarts,
			Window: def.Restart.WindowMs.Duration(), BackoffFactor: def.Restart.BackoffFactor, MaxDelay: def.Restart.MaxDelayMs.Duration(),
		},
		OutputLines: def.OutputLines,
		CanRestart:  gate,
	}
	if m := def.Memory; m != nil {
		spec.Memory = &runtime.MemoryPolicy{LimitBytes: m.LimitBytes, WarnBytes: m.WarnBytes, CheckInterval: m.CheckIntervalMs.Duration()}
	}
	return spec
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// signalNumber maps a validated stopSignal name to its number.
func signalNumber(name string) syscall.Signal {
	switch name {
	case "SIGIOT":
		return syscall.SIGABRT
	case "SIGPOLL":
		return syscall.SIGIO
	}
	if s := unix.SignalNum(name); s != 0 {
		return s
	}
	return syscall.SIGTERM
}

func portOf(ports []PortAssignment, id string) int {
	port := 0
	for _, p := range ports {
		if p.ID == id {
			port = p.Port // a later entry with the same id wins, as object keys do
		}
	}
	return port
}

var errNoRelease = errors.New("no release")
