package engine

import (
	"fmt"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// stopRelease stops a release without draining (docs/cli.md#stop): the
// active one stops getting traffic first. Services and singletons keep
// running.
func (e *Engine) stopRelease(id string) error {
	if e.stopping.Load() {
		return ErrShuttingDown
	}
	e.mu.Lock()
	var r *Release
	if id == "" {
		r = e.active
	} else {
		r = e.releaseLocked(id)
	}
	if r == nil {
		e.mu.Unlock()
		if id == "" {
			id = "active"
		}
		return fmt.Errorf("Release not found: %s", id)
	}
	wasActive := r == e.active
	if wasActive {
		e.active = nil
	}
	procs := append([]*instance(nil), r.procs...)
	e.mu.Unlock()
	if wasActive {
		e.proxy.SetActive(nil) // 503 No active release from here on
	}
	r.setState(stateStopped) // nothing of it restarts any more
	stopAll(procs)
	e.mu.Lock()
	r.stoppedAt = time.Now()
	plan := e.plan
	e.mu.Unlock()
	e.events.log("release stopped", jsconfig.Field{Key: "releaseId", Value: r.ID})
	e.pruneReleases(plan.ReleaseRetention)
	e.persist.request()
	return nil
}

func (e *Engine) releaseLocked(id string) *Release {
	for _, r := range e.releases {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// rollback re-deploys a retained release (docs/cli.md#how-a-rollback-runs):
// by id, or the most recently activated one other than the active release.
func (e *Engine) rollback(id string) (DeployResult, error) {
	if e.stopping.Load() {
		return DeployResult{}, ErrShuttingDown
	}
	e.mu.Lock()
	var target *Release
	if id != "" {
		target = e.releaseLocked(id)
		if target == nil {
			e.mu.Unlock()
			return DeployResult{}, fmt.Errorf("No retained release \"%s\" to roll back to.", id)
		}
	} else {
		for _, r := range e.releases {
			if r == e.active || r.activatedAt.IsZero() {
				continue
			}
			if target == nil || !r.activatedAt.Before(target.activatedAt) {
				target = r // ties go to the later entry
			}
		}
		if target == nil {
			e.mu.Unlock()
			return DeployResult{}, fmt.Errorf("No previous release to roll back to.")
		}
	}
	if target == e.active {
		e.mu.Unlock()
		return DeployResult{}, fmt.Errorf("Release \"%s\" is already active.", target.ID)
	}
	procs := append([]*instance(nil), target.procs...)
	e.mu.Unlock()
	if target.getState() != stateStopped {
		// Still draining: its id is about to be reused, so it stops now.
		target.setState(stateStopped)
		stopAll(procs)
		e.mu.Lock()
		target.stoppedAt = time.Now()
		e.mu.Unlock()
		if e.stopping.Load() {
			return DeployResult{}, ErrShuttingDown
		}
	}
	e.ops.setRelease(target.ID) // for the operations command
	e.events.log("rollback starting", jsconfig.Field{Key: "releaseId", Value: target.ID}, jsconfig.Field{Key: "releasePath", Value: target.Path})
	return e.deploy(DeployRequest{ReleasePath: target.Path, ReleaseID: target.ID, Revision: target.Revision, RevisionSet: true})
}

// restart bounces non-proxied processes (docs/cli.md#restart), one after the
// other, each with its full stop sequence; failed or stopped ones are
// revived.
func (e *Engine) restart(processID string, idSet bool, policy string, policySet bool) ([]string, error) {
	if e.stopping.Load() {
		return nil, ErrShuttingDown
	}
	e.mu.Lock()
	plan := e.plan
	web := plan.ProxiedProcess()
	if (policySet && policy == string(jsconfig.PolicyProxied)) || (idSet && web != nil && processID == web.ID) {
		e.mu.Unlock()
		return nil, fmt.Errorf(`The proxied process cannot be restarted in place; use "rollbridge deploy" for a zero-downtime replacement.`)
	}
	var targets []*instance
	for i := range plan.Processes {
		def := &plan.Processes[i]
		if def.Policy == jsconfig.PolicyProxied || (policySet && string(def.Policy) != policy) {
			continue
		}
		var candidates []*instance
		switch def.Policy {
		case jsconfig.PolicyService:
			if s := e.serviceLocked(def.ID); s != nil {
				candidates = append(candidates, s.inst)
			}
		case jsconfig.PolicySingleton:
			if s := e.singletonLocked(def.ID); s != nil {
				candidates = append(candidates, s.inst)
			}
		case jsconfig.PolicyCompanion:
			if e.active != nil {
				for _, in := range e.active.procs {
					if in.def.ID == def.ID {
						candidates = append(candidates, in)
					}
				}
			}
		}
		for _, in := range candidates {
			if !idSet || processID == def.ID || processID == in.id {
				targets = append(targets, in)
			}
		}
	}
	e.mu.Unlock()
	if idSet && len(targets) == 0 {
		return nil, fmt.Errorf("No managed process with id \"%s\" to restart.", processID)
	}
	restarted := []string{}
	for _, in := range targets {
		if e.stopping.Load() {
			return restarted, ErrShuttingDown
		}
		e.events.log("process restart requested", jsconfig.Field{Key: "processId", Value: in.id})
		in.proc.Stop()
		if err := e.startInstance(in, runtime.ReasonManual); err != nil {
			return restarted, err
		}
		if e.stopping.Load() {
			return restarted, ErrShuttingDown // the start was called off
		}
		restarted = append(restarted, in.id)
	}
	return restarted, nil
}
