package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/proxy"
	"github.com/rollbridge/rollbridge/runtime"
)

// savedState is what re-adoption reads of the main state file: the
// releases, services and singletons the previous daemon ran, and the
// restart settings of its config.
type savedState struct {
	ActiveReleaseID *string                   `json:"activeReleaseId"`
	Releases        []savedRelease            `json:"releases"`
	Services        []savedNamed              `json:"services"`
	Singletons      []savedNamed              `json:"singletons"`
	RestartSettings *jsconfig.RestartSettings `json:"restartSettings"`
}

type savedRelease struct {
	ActivatedAt    string         `json:"activatedAt"`
	DrainStartedAt string         `json:"drainStartedAt"`
	Ports          map[string]int `json:"ports"`
	Processes      []savedProcess `json:"processes"`
	ReleaseID      string         `json:"releaseId"`
	ReleasePath    string         `json:"releasePath"`
	Revision       string         `json:"revision"`
	State          string         `json:"state"`
}

type savedProcess struct {
	Hook            string `json:"hook"` // set on a running hook's entry
	ID              string `json:"id"`
	LastStartReason string `json:"lastStartReason"`
	// LastMemoryRestartAt is absent when there was none.
	LastMemoryRestartAt string `json:"lastMemoryRestartAt"`
	MemoryRestarts      int    `json:"memoryRestarts"`
	Pgid                int    `json:"pgid"`
	Pid                 int    `json:"pid"`
	Restarts            int    `json:"restarts"`
	StartedAt           string `json:"startedAt"`
	StartTime           uint64 `json:"startTime"`
	State               string `json:"state"`
}

type savedNamed struct {
	ID      string       `json:"id"`
	Process savedProcess `json:"process"`
}

// parseSavedState decodes the main state file for re-adoption; a file
// that does not decode cannot be re-adopted from (its processes are
// still reported as orphans).
func parseSavedState(raw []byte) (*savedState, error) {
	var s savedState
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("the state file does not have the shape this rollbridge writes: %w", err)
	}
	return &s, nil
}

// orphan is the entry as the orphan list keeps it.
func (p savedProcess) orphan(releaseID *string) Orphan {
	return Orphan{ID: p.ID, Pid: p.Pid, ReleaseID: releaseID, Pgid: p.Pgid, StartTime: p.StartTime}
}

// confirmed reports whether the recorded process still runs, identified
// by its process group and start time (entries without a start time,
// as the Node.js rollbridge writes them, are never re-adopted).
func (p savedProcess) confirmed() bool {
	return p.Pid > 0 && p.StartTime != 0 && p.orphan(nil).identity() == identityConfirmed
}

// wasRunning reports whether the entry was a process meant to run: one
// that died while no daemon watched it is started again.
func (p savedProcess) wasRunning() bool {
	switch runtime.State(p.State) {
	case runtime.StateRunning, runtime.StateStarting, runtime.StateStopping:
		return true
	}
	return false
}

// parseISO reads a time the state file wrote (runtime.ISOTime); zero when
// absent or unreadable.
func parseISO(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// readoption is what the daemon re-adopted at start-up, for status.
type readoption struct {
	at        time.Time
	fdStore   bool // descriptors came back from systemd's store
	releases  []string
	processes int
	missed    []missedProcess
	refused   string // why nothing was re-adopted, or ""
}

// missedProcess is a live process of the previous daemon that was not
// re-adopted: it is an orphan.
type missedProcess struct {
	o      Orphan
	reason string
}

func (r *readoption) object() jsconfig.Object {
	missed := make([]jsconfig.Object, 0, len(r.missed))
	for _, m := range r.missed {
		missed = append(missed, jsconfig.Object{
			{Key: "id", Value: m.o.ID}, {Key: "pid", Value: m.o.Pid},
			{Key: "reason", Value: m.reason}, {Key: "releaseId", Value: m.o.releaseValue()},
		})
	}
	releases := append([]string{}, r.releases...)
	var refused any
	if r.refused != "" {
		refused = r.refused
	}
	return jsconfig.Object{
		{Key: "at", Value: runtime.ISOTime(r.at)},
		{Key: "fdStore", Value: r.fdStore},
		{Key: "notReadopted", Value: missed},
		{Key: "processes", Value: r.processes},
		{Key: "refused", Value: refused},
		{Key: "releases", Value: releases},
	}
}

// adoptPlan is one re-adoption being put together: nothing of it is
// visible to the rest of the daemon until commit.
type adoptPlan struct {
	e        *Engine
	plan     *jsconfig.Plan
	saved    *savedState
	releases []*Release
	// savedReleases are the entries releases were built from, in order.
	savedReleases []*savedRelease
	active        *Release
	web           *savedProcess // the active release's web process
	webPort       int
	// used marks the entries taken over (by pid and start time); the
	// other live ones stay orphans.
	used map[Orphan]bool
	// failed holds why a live entry could not be adopted (runtime.Adopt's
	// error); it stays an orphan and is not started anew beside itself.
	failed     map[Orphan]string
	services   []*serviceEntry
	singletons []*singletonEntry
	restart    []*instance // recorded as running but gone: started again
	report     *readoption
}

// orphanKey identifies an entry in used.
func orphanKey(pid int, start uint64) Orphan { return Orphan{Pid: pid, StartTime: start} }

// readopt takes over the releases, services and singletons that the
// previous daemon left running, when the state file says what they were
// and the config still describes them
// (docs/troubleshooting.md#when-the-daemon-crashes). The proxy's gate
// holds requests until the active release's web process answered its
// health check. It returns the live entries not taken over, which stay
// orphans as before.
func (e *Engine) readopt(saved *savedState, entries []Orphan) []Orphan {
	// Every way out lets requests flow again, also when there turned out
	// to be nothing to re-adopt (a reboot): a hold nobody lifts would keep
	// every request waiting for good, through later deploys too.
	defer e.endReadoptionHold()
	live := LiveOrphans(entries)
	if saved == nil || len(live) == 0 {
		return entries
	}
	plan := e.opts.Plan
	report := &readoption{at: time.Now(), fdStore: e.fds.passedAny()}
	refuse := func(reason string, fields ...jsconfig.Field) []Orphan {
		report.refused = reason
		e.setReadoption(report)
		e.events.log("re-adoption refused", append(fields, jsconfig.Field{Key: "reason", Value: reason})...)
		return entries
	}
	if saved.RestartSettings == nil {
		return refuse("the state file does not record the config the previous daemon ran (the Node.js rollbridge or an older rollbridge wrote it)")
	}
	if err := jsconfig.CompareRestartSettings(*saved.RestartSettings, jsconfig.SettingsOf(plan)); err != nil {
		var reload *jsconfig.ReloadError
		if errors.As(err, &reload) {
			return refuse("the config changed settings that a running daemon cannot change ("+strings.Join(reload.Settings, ", ")+"): "+strings.Join(reload.Details, "; "), reload.ReplyFields()...)
		}
		return refuse(err.Error())
	}
	if err := runtime.CanAdopt(); err != nil {
		return refuse("this system does not let the daemon watch processes it did not start (" + err.Error() + "; Linux 5.3 or later is needed, without a syscall filter that denies pidfd_open)")
	}
	a := &adoptPlan{e: e, plan: plan, saved: saved, used: map[Orphan]bool{}, failed: map[Orphan]string{}, report: report}
	if err := a.releasesFromState(); err != nil {
		return refuse(err.Error())
	}
	if a.active != nil {
		// A shutdown cancels the check; the processes are then taken
		// over only to be stopped, which needs no healthy web process.
		if err := a.checkWeb(); err != nil && !e.stopping.Load() {
			e.events.log("re-adoption failed", jsconfig.Field{Key: "error", Value: err.Error()}, jsconfig.Field{Key: "releaseId", Value: a.active.ID})
			return refuse("the active release " + a.active.ID + " failed its health check: " + err.Error())
		}
	}
	if err := a.adopt(); err != nil {
		return refuse(err.Error())
	}
	if !a.commit() {
		// The daemon began to shut down (systemctl stop) before the
		// processes were its own. Under KillMode=process nobody else
		// stops them: let go now, they would run on unsupervised.
		a.stopAdopted()
		report.processes, report.releases = 0, nil
		return refuse("the daemon began to shut down during the re-adoption: it stopped the processes it had taken over")
	}
	var left []Orphan
	for _, o := range entries {
		if !a.used[orphanKey(o.Pid, o.StartTime)] {
			left = append(left, o)
		}
	}
	for _, o := range LiveOrphans(left) {
		report.missed = append(report.missed, missedProcess{o: o, reason: a.missReason(o)})
	}
	for _, m := range report.missed {
		e.events.log("process not re-adopted", jsconfig.Field{Key: "pid", Value: m.o.Pid}, jsconfig.Field{Key: "processId", Value: m.o.ID},
			jsconfig.Field{Key: "reason", Value: m.reason}, jsconfig.Field{Key: "releaseId", Value: m.o.releaseValue()})
	}
	e.setReadoption(report)
	return left
}

// setReadoption records the outcome for status.
func (e *Engine) setReadoption(r *readoption) {
	e.mu.Lock()
	e.readoption = r
	e.mu.Unlock()
}

// endReadoptionHold lets requests flow that holdForReadoption held (the
// traffic state restored from the state file, a pause or maintenance,
// still applies).
func (e *Engine) endReadoptionHold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.traffic.readopting {
		e.traffic.readopting = false
		e.applyGateLocked()
	}
}

// holdForReadoption holds requests at the proxy while a re-adoption
// checks the active release, when there is one to check.
func (e *Engine) holdForReadoption(saved *savedState) {
	if saved == nil || saved.ActiveReleaseID == nil || saved.RestartSettings == nil {
		return
	}
	e.mu.Lock()
	e.traffic.readopting = true
	e.applyGateLocked()
	e.mu.Unlock()
}

// missReason says why a live entry was not re-adopted.
func (a *adoptPlan) missReason(o Orphan) string {
	if reason, ok := a.failed[orphanKey(o.Pid, o.StartTime)]; ok {
		return reason
	}
	for _, sr := range a.saved.Releases {
		if o.ReleaseID == nil || *o.ReleaseID != sr.ReleaseID {
			continue
		}
		for _, p := range sr.Processes {
			if p.Pid == o.Pid && p.Hook != "" {
				return "it is a lifecycle hook or --before-switch command, which is not resumed"
			}
		}
		if sr.State == stateStarting.String() {
			return "its release was still starting: the deploy it belonged to did not finish"
		}
	}
	if o.ReleaseID != nil {
		return "it does not belong to a live release of the config, or another entry of the same id was taken over"
	}
	return "it is not a service or singleton of the config, or another entry of the same id was taken over"
}

// releasesFromState builds the live releases the state file recorded.
func (a *adoptPlan) releasesFromState() error {
	seen := map[string]bool{}
	for i := range a.saved.Releases {
		sr := &a.saved.Releases[i]
		state := sr.State
		if state != stateActive.String() && state != stateDraining.String() {
			continue
		}
		if seen[sr.ReleaseID] || sr.ReleaseID == "" {
			continue // a release superseded by a same-id deploy: its processes stay orphans
		}
		seen[sr.ReleaseID] = true
		r := newRelease(sr.ReleaseID, sr.ReleasePath, sr.Revision)
		for i := range a.plan.Processes {
			def := &a.plan.Processes[i]
			if def.Port == nil {
				continue
			}
			port, ok := sr.Ports[def.ID]
			if !ok || port < 1 || port > 65535 {
				return fmt.Errorf("release %s has no recorded port for %s", sr.ReleaseID, def.ID)
			}
			r.ports = append(r.ports, PortAssignment{ID: def.ID, Port: port})
		}
		r.activatedAt = parseISO(sr.ActivatedAt)
		if state == stateActive.String() {
			if a.active != nil || a.saved.ActiveReleaseID == nil || *a.saved.ActiveReleaseID != sr.ReleaseID {
				return fmt.Errorf("the state file's active release %q does not match its releases", sr.ReleaseID)
			}
			r.setState(stateActive)
			a.active = r
			web := a.plan.ProxiedProcess()
			for i := range sr.Processes {
				if p := &sr.Processes[i]; p.Hook == "" && web != nil && p.ID == web.ID {
					a.web = p
				}
			}
			if web != nil {
				a.webPort = portOf(r.ports, web.ID)
			}
		} else {
			r.setState(stateDraining)
			r.drainStartedAt = parseISO(sr.DrainStartedAt)
			if r.drainStartedAt.IsZero() {
				r.drainStartedAt = time.Now()
			}
		}
		a.releases = append(a.releases, r)
		a.savedReleases = append(a.savedReleases, sr)
	}
	return nil
}

// checkWeb health-checks the active release's web process where it runs,
// and makes sure the answer came from it.
func (a *adoptPlan) checkWeb() error {
	if a.web == nil || !a.web.confirmed() {
		return errors.New("its web process is no longer running")
	}
	check, ok := webHealthCheck(a.plan, a.webPort)
	if ok {
		check.StartDelay = 0 // it has been running all along
		if err := check.Check(a.e.ctx); err != nil {
			return err
		}
	}
	return checkWebListener(a.web.ID, a.web.Pid, check)
}

// adoptProcess takes over the recorded entry p as in's process, or, when
// it is gone, gives in a new process that is started once everything is
// in place (restart) if the entry was meant to run.
func (a *adoptPlan) adoptProcess(in *instance, spec runtime.Spec, p *savedProcess, restart bool) {
	opts := a.e.instanceOptions(in)
	if p != nil && p.confirmed() {
		stdout, stderr := a.e.fds.outputPipes(p.Pid, p.StartTime)
		proc, err := runtime.Adopt(spec, opts, runtime.Adopted{
			PID: p.Pid, StartTime: p.StartTime, StartedAt: parseISO(p.StartedAt), LastStartReason: p.LastStartReason,
			Restarts: p.Restarts, MemoryRestarts: p.MemoryRestarts, LastMemoryRestartAt: parseISO(p.LastMemoryRestartAt),
			Stdout: stdout, Stderr: stderr,
		})
		if err == nil {
			in.proc = proc
			a.used[orphanKey(p.Pid, p.StartTime)] = true
			a.report.processes++
			output := "captured"
			if stdout == nil || stderr == nil {
				output = "lost"
			}
			a.e.processEvent(in)(runtime.Event{Message: "process re-adopted", Data: []runtime.Field{{Key: "output", Value: output}, {Key: "pid", Value: p.Pid}}})
			return
		}
		// Adopt closed the pipes; systemd's copies go too, or a process
		// that still runs would block once its pipe is full.
		a.e.fds.remove(outputFDNames(p.Pid, p.StartTime))
		if p.confirmed() {
			// Still running, just not adoptable: starting it anew would
			// run it twice. It stays an orphan, and so does its instance's
			// place in the release (not running).
			a.failed[orphanKey(p.Pid, p.StartTime)] = err.Error()
			in.proc = runtime.New(spec, opts)
			return
		}
	}
	in.proc = runtime.New(spec, opts)
	if restart && p != nil && p.wasRunning() {
		a.restart = append(a.restart, in)
	}
}

// savedEntry finds the recorded process with instance id id.
func savedEntry(list []savedProcess, id string) *savedProcess {
	for i := range list {
		if list[i].Hook == "" && list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// adopt builds the instances of every re-adopted release, service and
// singleton from the config, over the recorded processes. Everything is
// rendered before the first process is taken over: a refusal (a command
// that no longer renders) then leaves every process an orphan, none of
// them supervised by a Process nobody owns.
func (a *adoptPlan) adopt() error {
	e, plan := a.e, a.plan
	type pending struct {
		in      *instance
		spec    runtime.Spec
		saved   *savedProcess
		restart bool
	}
	var todo []pending
	for i, r := range a.releases {
		sr := a.savedReleases[i]
		for _, def := range releaseStartOrder(plan) {
			for replica := 0; replica < def.Replicas; replica++ {
				in, spec, err := e.renderInstance(plan, r, def, replica, e.releaseGate(r))
				if err != nil {
					return fmt.Errorf("release %s: %w", r.ID, err)
				}
				todo = append(todo, pending{in, spec, savedEntry(sr.Processes, in.id), r == a.active})
				r.procs = append(r.procs, in)
			}
		}
	}
	// One entry per id: a second one of the same id stays an orphan, so
	// a service or singleton never runs twice.
	seen := map[string]bool{}
	var services []*serviceEntry
	for i := range a.saved.Services {
		s := &a.saved.Services[i]
		def := plan.Process(s.ID)
		if def == nil || def.Policy != jsconfig.PolicyService || def.DeployStrategy != jsconfig.StrategyPersistent || a.active == nil || seen[def.ID] {
			continue
		}
		seen[def.ID] = true
		in, spec, err := e.renderInstance(plan, a.active, def, 0, func() bool { return !e.stopping.Load() })
		if err != nil {
			return fmt.Errorf("service %s: %w", def.ID, err)
		}
		todo = append(todo, pending{in, spec, &s.Process, true})
		entry := &serviceEntry{inst: in, startedBy: a.active}
		if def.Port != nil {
			port := portOf(a.active.ports, def.ID)
			entry.port = &port
		}
		services = append(services, entry)
	}
	var singletons []*singletonEntry
	for i := range a.saved.Singletons {
		s := &a.saved.Singletons[i]
		def := plan.Process(s.ID)
		if def == nil || def.Policy != jsconfig.PolicySingleton || a.active == nil || seen[def.ID] {
			continue
		}
		seen[def.ID] = true
		in, spec, err := e.renderInstance(plan, a.active, def, 0, e.releaseGate(a.active))
		if err != nil {
			return fmt.Errorf("singleton %s: %w", def.ID, err)
		}
		saved := s.Process
		if saved.State == string(runtime.StateStopped) {
			// Nothing stops a singleton of the active release but its
			// replacement by a deploy, which stops the old copy before it
			// starts the new one: the daemon died in between, and the
			// singleton is meant to run.
			saved.State = string(runtime.StateRunning)
		}
		todo = append(todo, pending{in, spec, &saved, true})
		singletons = append(singletons, &singletonEntry{inst: in, release: a.active})
	}
	for _, p := range todo {
		a.adoptProcess(p.in, p.spec, p.saved, p.restart)
	}
	for _, r := range a.releases {
		a.report.releases = append(a.report.releases, r.ID)
	}
	a.services, a.singletons = services, singletons
	return nil
}

// stopAdopted runs the stop sequence of every process taken over so far
// and waits for it.
func (a *adoptPlan) stopAdopted() {
	stopAll(processesOf(a.releases, a.services, a.singletons))
}

// commit makes the re-adopted model the daemon's: traffic goes to the
// active release, draining ones finish their drain, and processes that
// died while no daemon watched them start again. It reports false, and
// changes nothing, once a shutdown has begun: the shutdown would not see
// what commit adds.
func (a *adoptPlan) commit() bool {
	e, plan := a.e, a.plan
	if web := plan.ProxiedProcess(); web != nil {
		for _, r := range a.releases {
			r.target = e.newTarget(plan, r, portOf(r.ports, web.ID))
		}
	}
	e.mu.Lock()
	if e.stopping.Load() {
		e.mu.Unlock()
		return false
	}
	e.releases = append(e.releases, a.releases...)
	e.active = a.active
	e.services = append(e.services, a.services...)
	for _, s := range a.services {
		if s.port != nil {
			e.servicePorts[s.inst.def.ID] = *s.port
		}
	}
	e.singletons = append(e.singletons, a.singletons...)
	e.mu.Unlock()
	if a.active != nil {
		e.proxy.SetActive(a.active.target)
	}
	for _, r := range a.releases {
		procs := 0
		for _, in := range r.procs {
			if in.proc.PID() != 0 {
				procs++
			}
		}
		e.events.log("release re-adopted", jsconfig.Field{Key: "processes", Value: procs}, jsconfig.Field{Key: "releaseId", Value: r.ID}, jsconfig.Field{Key: "state", Value: r.getState().String()})
		if r.getState() == stateDraining {
			go e.drain(r, plan)
		}
	}
	e.mu.Lock()
	e.readoptRestarts = a.restart
	e.mu.Unlock()
	e.persist.request()
	return true
}

// restartReadopted starts the processes of re-adopted releases, services
// and singletons that died while no daemon watched them. It runs once the
// orphans are recorded too: each start writes the state file, and a
// crash right after must not lose the orphans from it.
func (e *Engine) restartReadopted() {
	e.mu.Lock()
	list := e.readoptRestarts
	e.readoptRestarts = nil
	e.mu.Unlock()
	for _, in := range list {
		if err := e.startInstance(in, runtime.ReasonCrash); err != nil {
			e.events.log("process restart failed", jsconfig.Field{Key: "error", Value: err.Error()}, jsconfig.Field{Key: "processId", Value: in.id}, jsconfig.Field{Key: "releaseId", Value: in.releaseTag()})
		}
	}
}

// newTarget is the proxy target of release r's web process on port.
func (e *Engine) newTarget(plan *jsconfig.Plan, r *Release, port int) *proxy.Target {
	target := proxy.NewTarget(r.ID, plan.Proxy.UpstreamHost, port, e.proxy)
	if e.metrics != nil {
		target.SetObserver(e.metrics.observer(r.ID))
	}
	return target
}

// stopOrphansBeforeBootstrap stops what a previous daemon left running
// when it could not be re-adopted and a bootstrap is about to start the
// application anew: otherwise a worker or a singleton would run twice.
// Only processes whose identity the state file confirms (process group
// and start time) are signalled, as recover --force would; the others
// stay orphans.
func (e *Engine) stopOrphansBeforeBootstrap() {
	e.mu.Lock()
	tried := e.readoption != nil
	e.mu.Unlock()
	if !tried {
		return
	}
	var confirmed []Orphan
	for _, o := range e.orphanList() {
		if o.StartTime != 0 && o.identity() == identityConfirmed {
			confirmed = append(confirmed, o)
		}
	}
	if len(confirmed) == 0 {
		return
	}
	timeout := e.opts.Plan.Proxy.ForceStopTimeoutMs.Duration()
	outcomes := make([]orphanOutcome, len(confirmed))
	var wg sync.WaitGroup
	for i, o := range confirmed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcomes[i] = stopOrphan(o, timeout)
		}()
	}
	wg.Wait()
	stopped := 0
	for _, out := range outcomes {
		if out == orphanStopped {
			stopped++
		}
	}
	e.orphanList() // forgets the stopped ones
	e.events.log("orphans stopped before bootstrap", jsconfig.Field{Key: "count", Value: stopped}, jsconfig.Field{Key: "releaseId", Value: e.opts.Bootstrap.ReleaseID})
}
