package engine

import (
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/proxy"
)

// stopMargin is what a command waiting for stops allows on top of the
// longest stop sequence: scheduling, the final state write, a slow /proc.
const stopMargin = 10 * time.Second

// StopBound is how long the CLI waits for a command that stops the
// processes of plan selected by include (they stop in parallel): the
// longest stop sequence among them plus a margin. ok is false when one of
// them stops "indefinitely" (no bound).
func StopBound(plan *jsconfig.Plan, include func(*jsconfig.Process) bool) (d time.Duration, ok bool) {
	for i := range plan.Processes {
		def := &plan.Processes[i]
		if !include(def) {
			continue
		}
		bound, bounded := processSpec(def, def.ID, &RenderedProcess{}, nil).StopBound()
		if !bounded {
			return 0, false
		}
		d = max(d, bound)
	}
	return d + stopMargin, true
}

// ShutdownBound is StopBound for a shutdown: every process, then up to
// proxy.ShutdownGrace for open client connections.
func ShutdownBound(plan *jsconfig.Plan) (time.Duration, bool) {
	d, ok := StopBound(plan, func(*jsconfig.Process) bool { return true })
	return d + proxy.ShutdownGrace, ok
}

// ReleaseStopBound is StopBound for stopping one release: its own
// processes (persistent services and singletons keep running).
func ReleaseStopBound(plan *jsconfig.Plan) (time.Duration, bool) {
	return StopBound(plan, func(p *jsconfig.Process) bool { return !daemonWideProcess(p) })
}
