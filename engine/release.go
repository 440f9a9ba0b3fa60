package engine

import (
	"sync/atomic"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/proxy"
	"github.com/rollbridge/rollbridge/runtime"
)

// releaseState is a release's state. status shows active, draining and
// stopped ones (docs/cli.md#status); starting and failed ones appear only
// in the state file.
type releaseState int32

const (
	stateStarting releaseState = iota
	stateActive
	stateDraining
	stateStopped
	stateFailed
)

func (s releaseState) String() string {
	return [...]string{"starting", "active", "draining", "stopped", "failed"}[s]
}

// Release is one deploy of one release directory: its ports, its own
// processes (handoff services, companions, the proxied process) and its
// proxy target.
type Release struct {
	ID       string
	Path     string
	Revision string

	state atomic.Int32 // releaseState; read lock-free by restart gates

	// Guarded by Engine.mu.
	activatedAt    time.Time
	drainStartedAt time.Time
	stoppedAt      time.Time
	ports          []PortAssignment // every process with a port, config order
	procs          []*instance      // start order
	target         *proxy.Target
	drained        chan struct{} // closed when its drain (or stop) finished
	// beforeSwitch is the deploy's --before-switch command while it runs
	// (its Label is beforeSwitchLabel), recorded in the state file as
	// one more entry of the release.
	beforeSwitch *runtime.Hook
}

func newRelease(id, path, revision string) *Release {
	r := &Release{ID: id, Path: path, Revision: revision, drained: make(chan struct{})}
	r.state.Store(int32(stateStarting))
	return r
}

func (r *Release) getState() releaseState { return releaseState(r.state.Load()) }

func (r *Release) setState(s releaseState) { r.state.Store(int32(s)) }

// live reports whether the release may still run processes.
func (r *Release) live() bool {
	s := r.getState()
	return s == stateStarting || s == stateActive || s == stateDraining
}

// canRestart is the auto-restart gate of the release's processes: only
// a starting or active release restarts what crashed
// (docs/workers.md#1-which-policy-for-which-process).
func (r *Release) canRestart() bool {
	s := r.getState()
	return s == stateStarting || s == stateActive
}

// releaseGate is the restart gate of r's processes in this daemon: also
// closed once a shutdown or a retirement began.
func (e *Engine) releaseGate(r *Release) func() bool {
	return func() bool { return r.canRestart() && !e.stopping.Load() }
}

// instance is one managed process: a release process, a persistent
// service or a singleton.
type instance struct {
	id      string // instance id: "web", "worker#1"
	def     *jsconfig.Process
	replica int
	proc    *runtime.Process
	// tag is the release whose definition the process runs; process
	// events carry it as releaseId.
	tag atomic.Pointer[string]
	// unrecorded is set when the last spawn of the command could not be
	// written to the state file, cleared by the next one that could.
	unrecorded atomic.Pointer[unrecordedError]
}

func (in *instance) setTag(releaseID string) { in.tag.Store(&releaseID) }

// daemonWide reports a persistent service or a singleton: a process that
// belongs to the daemon rather than to one release.
func (in *instance) daemonWide() bool { return daemonWideProcess(in.def) }

// daemonWideProcess reports whether instances of p are a persistent
// service or a singleton.
func daemonWideProcess(p *jsconfig.Process) bool {
	return p.Policy == jsconfig.PolicySingleton ||
		(p.Policy == jsconfig.PolicyService && p.DeployStrategy != jsconfig.StrategyHandoff)
}

func (in *instance) releaseTag() string {
	if t := in.tag.Load(); t != nil {
		return *t
	}
	return ""
}

// serviceEntry is a persistent service: daemon-wide, on a stable port.
type serviceEntry struct {
	inst      *instance
	port      *int
	startedBy *Release // the deploy that started it, for rollback if it fails
}

// singletonEntry is the one running copy of a singleton.
type singletonEntry struct {
	inst    *instance
	release *Release // the release it was built from: its gate
}
