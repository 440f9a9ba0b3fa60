package engine

import (
	"fmt"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// allocatePorts gives a port to every process of plan that has one, in config
// order (docs/processes.md#8-ports). Persistent services keep the port they
// got first. Ports held by any live release or service are skipped even when
// momentarily unbound (a crashed process waiting to restart), and are counted
// as in use.
func (e *Engine) allocatePorts(plan *jsconfig.Plan) ([]PortAssignment, error) {
	e.mu.Lock()
	held := e.heldPortsLocked()
	servicePorts := make(map[string]int, len(e.servicePorts))
	for id, p := range e.servicePorts {
		servicePorts[id] = p
	}
	e.mu.Unlock()

	host := plan.Proxy.UpstreamHost
	chosen := map[int]bool{}
	var out []PortAssignment
	for i := range plan.Processes {
		p := &plan.Processes[i]
		if p.Port == nil {
			continue
		}
		if p.Policy == jsconfig.PolicyService && p.DeployStrategy == jsconfig.StrategyPersistent {
			if port, ok := servicePorts[p.ID]; ok {
				chosen[port] = true
				out = append(out, PortAssignment{ID: p.ID, Port: port})
				continue
			}
		}
		if p.Port.From == 0 || p.Port.To == 0 {
			port, err := runtime.EphemeralPort(host)
			if err != nil {
				code := "UNKNOWN"
				if pe, ok := err.(*runtime.PortError); ok {
					code = pe.Code
				}
				return nil, fmt.Errorf("Unable to allocate an ephemeral port on %s (%s)", host, code)
			}
			chosen[port] = true
			out = append(out, PortAssignment{ID: p.ID, Port: port})
			continue
		}
		port, err := scanRange(host, *p.Port, chosen, held)
		if err != nil {
			return nil, err
		}
		chosen[port] = true
		out = append(out, PortAssignment{ID: p.ID, Port: port})
	}
	return out, nil
}

// scanRange walks from..to (at most 65535) for a port that binds.
func scanRange(host string, r jsconfig.PortRange, chosen, held map[int]bool) (int, error) {
	reserved, inUse, unavailable := 0, 0, 0
	code := ""
	for port := r.From; port <= r.Last(); port++ {
		switch {
		case chosen[port]:
			reserved++
			continue
		case held[port]:
			inUse++
			continue
		}
		switch res, c := runtime.ProbeBind(host, port); res {
		case runtime.BindFree:
			return port, nil
		case runtime.BindInUse:
			inUse++
		default:
			unavailable++
			if code == "" {
				code = c
			}
		}
	}
	total := r.To - float64(r.From) + 1
	word := "ports"
	if total == 1 {
		word = "port"
	}
	msg := fmt.Sprintf("No available ports in range %d-%s (%s %s on %s): %d reserved by this deploy, %d already in use",
		r.From, jsconfig.FormatNumber(r.To), jsconfig.FormatNumber(total), word, host, reserved, inUse)
	if unavailable > 0 {
		msg += fmt.Sprintf(", %d could not be bound (e.g. %s)", unavailable, code)
	}
	return 0, fmt.Errorf("%s. Widen the port range, free a port, or check bind permissions.", msg)
}

// heldPortsLocked lists the ports of live releases and of services.
func (e *Engine) heldPortsLocked() map[int]bool {
	held := map[int]bool{}
	add := func(r *Release) {
		if r.live() {
			for _, pa := range r.ports {
				held[pa.Port] = true
			}
		}
	}
	for _, r := range e.releases {
		add(r)
	}
	for r := range e.starting {
		add(r)
	}
	for r := range e.retiring {
		add(r)
	}
	for _, p := range e.servicePorts {
		held[p] = true
	}
	return held
}
