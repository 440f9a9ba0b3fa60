package engine

import (
	"errors"
	"fmt"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// ensureServices starts, in config order, every persistent service that is
// not registered yet (step 5 of docs/cli.md#what-the-daemon-does). It returns
// the services this deploy started, so a failed deploy can take them back.
func (e *Engine) ensureServices(plan *jsconfig.Plan, r *Release) ([]*serviceEntry, error) {
	var started []*serviceEntry
	for i := range plan.Processes {
		def := &plan.Processes[i]
		if def.Policy != jsconfig.PolicyService || def.DeployStrategy != jsconfig.StrategyPersistent {
			continue
		}
		e.mu.Lock()
		registered := e.serviceLocked(def.ID) != nil
		e.mu.Unlock()
		if registered {
			continue // running, crashed or failed: left alone
		}
		if e.stopping.Load() {
			return started, ErrShuttingDown
		}
		in, err := e.buildInstance(plan, r, def, 0, func() bool { return !e.stopping.Load() })
		if err != nil {
			return started, err
		}
		entry := &serviceEntry{inst: in, startedBy: r}
		e.mu.Lock()
		if def.Port != nil {
			port := portOf(r.ports, def.ID)
			entry.port = &port
			e.servicePorts[def.ID] = port
		}
		e.services = append(e.services, entry)
		e.mu.Unlock()
		if err := e.startRecorded(in, runtime.ReasonDeploy); err != nil {
			in.proc.Stop() // it may run although it could not be recorded
			e.mu.Lock()
			e.forgetServiceLocked(entry)
			e.mu.Unlock()
			return started, err
		}
		started = append(started, entry)
		if e.stopping.Load() {
			return started, ErrShuttingDown
		}
	}
	return started, nil
}

func (e *Engine) serviceLocked(id string) *serviceEntry {
	for _, s := range e.services {
		if s.inst.def.ID == id {
			return s
		}
	}
	return nil
}

func (e *Engine) forgetServiceLocked(s *serviceEntry) {
	for i, x := range e.services {
		if x == s {
			e.services = append(e.services[:i], e.services[i+1:]...)
			break
		}
	}
	delete(e.servicePorts, s.inst.def.ID)
}

// refreshServices re-renders every persistent service from the newly active
// release without restarting it (docs/workers.md#41-persistent-services): its
// next start uses the newest release's paths, env and settings.
func (e *Engine) refreshServices(plan *jsconfig.Plan, r *Release) {
	e.mu.Lock()
	services := append([]*serviceEntry(nil), e.services...)
	e.mu.Unlock()
	for _, s := range services {
		def := plan.Process(s.inst.def.ID)
		if def == nil {
			continue
		}
		spec, err := e.renderSpec(plan, r, def, 0, s.inst.id, func() bool { return !e.stopping.Load() })
		if err != nil {
			continue // keep the definition it has; the next deploy retries
		}
		s.inst.def = def
		s.inst.setTag(r.ID)
		s.inst.proc.UpdateSpec(spec)
	}
}

// replaceSingletons stops each singleton's old copy, then starts one from the
// new release (docs/workers.md#3-singletons-work-that-must-never-run-twice):
// two copies never overlap. A singleton that fails to start leaves traffic on
// the new release; the error says so.
func (e *Engine) replaceSingletons(plan *jsconfig.Plan, r *Release) error {
	for i := range plan.Processes {
		def := &plan.Processes[i]
		if def.Policy != jsconfig.PolicySingleton {
			continue
		}
		if e.stopping.Load() {
			return ErrShuttingDown
		}
		e.mu.Lock()
		old := e.singletonLocked(def.ID)
		e.mu.Unlock()
		if old != nil {
			old.inst.proc.Stop()
			if e.stopping.Load() {
				return ErrShuttingDown
			}
		}
		in, err := e.buildInstance(plan, r, def, 0, e.releaseGate(r))
		if err == nil {
			e.mu.Lock()
			if e.stopping.Load() {
				e.mu.Unlock()
				return ErrShuttingDown
			}
			entry := &singletonEntry{inst: in, release: r}
			if old != nil {
				for j, x := range e.singletons {
					if x == old {
						e.singletons[j] = entry
					}
				}
			} else {
				e.singletons = append(e.singletons, entry)
			}
			e.mu.Unlock()
			err = e.startRecorded(in, runtime.ReasonDeploy)
			if u := (*unrecordedError)(nil); errors.As(err, &u) {
				in.proc.Stop() // never left running without a record
				err = fmt.Errorf("%s It was stopped; make sure the daemon can write the state file's directory, then deploy again.", u.Error())
			}
		}
		if err != nil {
			e.events.log("singleton replacement failed", jsconfig.Field{Key: "error", Value: err.Error()},
				jsconfig.Field{Key: "processId", Value: def.ID}, jsconfig.Field{Key: "releaseId", Value: r.ID})
			return fmt.Errorf("Traffic switched to %s, but singleton %s failed to start: %s", r.ID, def.ID, err.Error())
		}
	}
	return nil
}

func (e *Engine) singletonLocked(id string) *singletonEntry {
	for _, s := range e.singletons {
		if s.inst.def.ID == id {
			return s
		}
	}
	return nil
}
