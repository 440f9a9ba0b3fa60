package engine

import (
	"context"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// drain retires a release that lost the traffic (step 11 of
// docs/cli.md#what-the-daemon-does): its definitions are refreshed from the
// config now in force, nonBlockingDrain processes start stopping at once, the
// rest wait for open connections (up to proxy.drainTimeoutMs), handoff
// services stop last.
func (e *Engine) drain(r *Release, plan *jsconfig.Plan) {
	defer close(r.drained)
	if r.getState() == stateStopped {
		e.finishDrain(r, plan)
		return
	}
	e.mu.Lock()
	if r.getState() != stateDraining {
		r.setState(stateDraining)
		r.drainStartedAt = time.Now()
	}
	procs := append([]*instance(nil), r.procs...)
	e.mu.Unlock()

	// 3: the retiring processes follow the new config's stop settings. A
	// definition that no longer renders keeps the old one.
	for _, in := range procs {
		def := plan.Process(in.def.ID)
		if def == nil {
			continue
		}
		spec, err := e.renderSpec(plan, r, def, in.replica, in.id, e.releaseGate(r))
		if err != nil {
			continue
		}
		in.def = def
		in.proc.UpdateSpec(spec)
	}

	var early sync.WaitGroup
	var rest, handoff []*instance
	for _, in := range procs {
		switch {
		case in.def.Policy == jsconfig.PolicyService:
			handoff = append(handoff, in)
		case in.def.NonBlockingDrain:
			early.Add(1)
			go func() {
				defer early.Done()
				in.proc.Stop()
			}()
		default:
			rest = append(rest, in)
		}
	}
	if r.target != nil {
		// From when the drain began: a release re-adopted after a crash
		// has only what is left of its drain time.
		e.mu.Lock()
		deadline := r.drainStartedAt.Add(plan.Proxy.DrainTimeoutMs.Duration())
		e.mu.Unlock()
		ctx, cancel := context.WithDeadline(e.ctx, deadline)
		r.target.WaitIdle(ctx)
		cancel()
	}
	stopAll(rest)
	early.Wait()
	stopAll(handoff)
	e.finishDrain(r, plan)
}

// finishDrain marks a drained release stopped and applies retention.
func (e *Engine) finishDrain(r *Release, plan *jsconfig.Plan) {
	e.mu.Lock()
	r.setState(stateStopped)
	r.stoppedAt = time.Now()
	delete(e.retiring, r)
	target := r.target
	e.mu.Unlock()
	if target != nil {
		target.CloseIdleConnections()
	}
	e.events.log("release drained", jsconfig.Field{Key: "releaseId", Value: r.ID})
	e.pruneReleases(plan.ReleaseRetention)
	e.persist.request()
	// A drained release leaves its buffers, connection state and output
	// rings to the garbage collector; hand that memory back to the OS now
	// instead of keeping it until the scavenger gets to it, so an idle
	// daemon stays small. With a heap of a few MiB this is a forced GC
	// cycle of about a millisecond, once per retired release, off the
	// request path.
	debug.FreeOSMemory()
}

// pruneReleases forgets stopped releases beyond releaseRetention.keep or
// older than maxAgeMs (docs/config.md#43-releaseretention).
func (e *Engine) pruneReleases(keep jsconfig.ReleaseRetention) {
	e.mu.Lock()
	defer e.mu.Unlock()
	type stopped struct {
		r     *Release
		order int
	}
	var list []stopped
	for i, r := range e.releases {
		if r.getState() == stateStopped {
			list = append(list, stopped{r, i})
		}
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if !a.r.stoppedAt.Equal(b.r.stoppedAt) {
			return a.r.stoppedAt.After(b.r.stoppedAt)
		}
		return a.order > b.order
	})
	drop := map[*Release]bool{}
	now := time.Now()
	for i, s := range list {
		tooOld := keep.MaxAgeMs > 0 && !s.r.stoppedAt.IsZero() && now.Sub(s.r.stoppedAt) > keep.MaxAgeMs.Duration()
		if i >= keep.Keep || tooOld {
			drop[s.r] = true
		}
	}
	if len(drop) == 0 {
		return
	}
	kept := make([]*Release, 0, len(e.releases)-len(drop))
	for _, r := range e.releases {
		if !drop[r] {
			kept = append(kept, r)
		} else {
			e.metrics.forget(r.ID) // its series go with it
		}
	}
	e.releases = kept
}
