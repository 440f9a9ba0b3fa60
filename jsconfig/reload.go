package jsconfig

import "strings"

// ReloadError lists the settings whose change needs a daemon restart.
type ReloadError struct {
	Settings []string
}

func (e *ReloadError) Error() string {
	return "Config changes to " + strings.Join(e.Settings, ", ") +
		" cannot be applied live; restart the Rollbridge daemon before deploying."
}

// CheckReload compares the plan in use with a freshly loaded one and returns
// a *ReloadError naming every setting that cannot change while the daemon
// runs (docs/config.md#91-changes-that-need-a-daemon-restart), or nil when
// next can be adopted live.
func CheckReload(current, next *Plan) error {
	var changed []string
	if current.Application != next.Application {
		changed = append(changed, "application")
	}
	if !sameControl(current.Control, next.Control) {
		changed = append(changed, "control")
	}
	if current.StatePath != next.StatePath {
		changed = append(changed, "statePath")
	}
	if current.Proxy.Host != next.Proxy.Host {
		changed = append(changed, "proxy.host")
	}
	if current.Proxy.Port != next.Proxy.Port {
		changed = append(changed, "proxy.port")
	}
	if current.Proxy.UpstreamHost != next.Proxy.UpstreamHost {
		changed = append(changed, "proxy.upstreamHost")
	}
	if !sameProcessShape(current.Processes, next.Processes) {
		changed = append(changed, "processes")
	}
	if len(changed) == 0 {
		return nil
	}
	return &ReloadError{Settings: changed}
}

func sameControl(a, b Control) bool {
	return a.Path == b.Path && equalPtr(a.Mode, b.Mode) && equalPtr(a.Owner, b.Owner) && equalPtr(a.Group, b.Group)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// sameProcessShape reports whether the processes keep their ids, policies,
// strategies, replica counts and ports; order does not matter.
func sameProcessShape(cur, next []Process) bool {
	if len(cur) != len(next) {
		return false
	}
	byID := make(map[string]*Process, len(next))
	for i := range next {
		byID[next[i].ID] = &next[i]
	}
	for i := range cur {
		c := &cur[i]
		n, ok := byID[c.ID]
		if !ok || c.Policy != n.Policy || c.DeployStrategy != n.DeployStrategy || c.Replicas != n.Replicas || !equalPtr(c.Port, n.Port) {
			return false
		}
	}
	return true
}
