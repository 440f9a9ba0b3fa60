package jsconfig

import (
	"fmt"
	"strconv"
	"strings"
)

// ReloadError lists the settings whose change needs a daemon restart.
type ReloadError struct {
	Settings []string
	// Details names each difference (`processes[1] "worker": replicas 2 → 3`),
	// in the order of Settings.
	Details []string
}

// Error is the one-line refusal scripts match and the Node.js tool sends;
// the differences travel beside it (ReplyFields), never inside it.
func (e *ReloadError) Error() string {
	return "Config changes to " + strings.Join(e.Settings, ", ") +
		" cannot be applied live; restart the Rollbridge daemon before deploying."
}

// ReplyFields adds the differences to the daemon's error reply as
// "changes", one string each (docs/cli.md#control-protocol).
func (e *ReloadError) ReplyFields() Object {
	details := e.Details
	if details == nil {
		details = []string{}
	}
	return Object{{Key: "changes", Value: details}}
}

// CheckReload compares the plan in use with a freshly loaded one and returns
// a *ReloadError naming every setting that cannot change while the daemon
// runs, and what changed in it (docs/config.md#91-changes-that-need-a-daemon-restart),
// or nil when next can be adopted live.
func CheckReload(current, next *Plan) error {
	return CompareRestartSettings(SettingsOf(current), SettingsOf(next))
}

// RestartSettings are the settings of a plan that cannot change while the
// daemon runs, each as the text a refusal shows. The state file records
// them, so that a daemon restarted after a crash can tell whether it may
// take over what the previous one ran (docs/troubleshooting.md#when-the-daemon-crashes).
type RestartSettings struct {
	Application       string            `json:"application"`
	ControlPath       string            `json:"control.path"`
	ControlMode       string            `json:"control.mode"`
	ControlOwner      string            `json:"control.owner"`
	ControlGroup      string            `json:"control.group"`
	StatePath         string            `json:"statePath"`
	ProxyHost         string            `json:"proxy.host"`
	ProxyPort         string            `json:"proxy.port"`
	ProxyUpstreamHost string            `json:"proxy.upstreamHost"`
	Processes         []ProcessSettings `json:"processes"`
}

// ProcessSettings are the settings of one process that a reload compares.
type ProcessSettings struct {
	ID             string `json:"id"`
	Policy         string `json:"policy"`
	DeployStrategy string `json:"deployStrategy"`
	Replicas       string `json:"replicas"`
	Port           string `json:"port"`
}

// SettingsOf extracts the restart settings of p.
func SettingsOf(p *Plan) RestartSettings {
	s := RestartSettings{
		Application:       quote(p.Application),
		ControlPath:       quote(p.Control.Path),
		ControlMode:       modeText(p.Control.Mode),
		ControlOwner:      idOrNameText(p.Control.Owner),
		ControlGroup:      idOrNameText(p.Control.Group),
		StatePath:         optionalString(p.StatePath),
		ProxyHost:         quote(p.Proxy.Host),
		ProxyPort:         strconv.Itoa(p.Proxy.Port),
		ProxyUpstreamHost: quote(p.Proxy.UpstreamHost),
		Processes:         make([]ProcessSettings, 0, len(p.Processes)),
	}
	for i := range p.Processes {
		d := &p.Processes[i]
		s.Processes = append(s.Processes, ProcessSettings{
			ID: d.ID, Policy: quote(string(d.Policy)), DeployStrategy: quote(string(d.DeployStrategy)),
			Replicas: strconv.Itoa(d.Replicas), Port: portText(d.Port),
		})
	}
	return s
}

// CompareRestartSettings is CheckReload on extracted settings.
func CompareRestartSettings(current, next RestartSettings) error {
	var changed, details []string
	diff := func(setting string, lines ...string) {
		if len(lines) > 0 {
			changed = append(changed, setting)
			details = append(details, lines...)
		}
	}
	diff("application", changedValue("application", current.Application, next.Application)...)
	var control []string
	control = append(control, changedValue("control.path", current.ControlPath, next.ControlPath)...)
	control = append(control, changedValue("control.mode", current.ControlMode, next.ControlMode)...)
	control = append(control, changedValue("control.owner", current.ControlOwner, next.ControlOwner)...)
	control = append(control, changedValue("control.group", current.ControlGroup, next.ControlGroup)...)
	diff("control", control...)
	diff("statePath", changedValue("statePath", current.StatePath, next.StatePath)...)
	diff("proxy.host", changedValue("proxy.host", current.ProxyHost, next.ProxyHost)...)
	diff("proxy.port", changedValue("proxy.port", current.ProxyPort, next.ProxyPort)...)
	diff("proxy.upstreamHost", changedValue("proxy.upstreamHost", current.ProxyUpstreamHost, next.ProxyUpstreamHost)...)
	diff("processes", processChanges(current.Processes, next.Processes)...)
	if len(changed) == 0 {
		return nil
	}
	return &ReloadError{Settings: changed, Details: details}
}

// changedValue is "<name>: <was> → <now>", or nothing when they are equal.
func changedValue(name, was, now string) []string {
	return changedField(name+":", was, now)
}

// changedField is "<name> <was> → <now>", or nothing when they are equal.
func changedField(name, was, now string) []string {
	if was == now {
		return nil
	}
	return []string{name + " " + was + " → " + now}
}

func quote(s string) string { return strconv.Quote(s) }

func optionalString(s string) string {
	if s == "" {
		return "unset"
	}
	return quote(s)
}

func modeText(m *int) string {
	if m == nil {
		return "unset"
	}
	return fmt.Sprintf("%#o", *m)
}

// idOrNameText keeps the distinction the comparison makes: "1000" (a name)
// and 1000 (an id) are different owners.
func idOrNameText(v *IDOrName) string {
	switch {
	case v == nil:
		return "unset"
	case v.IsName():
		return quote(v.Name)
	default:
		return strconv.FormatFloat(v.ID, 'f', -1, 64)
	}
}

func portText(r *PortRange) string {
	switch {
	case r == nil:
		return "none"
	case float64(r.From) == r.To:
		return strconv.Itoa(r.From)
	default:
		return strconv.Itoa(r.From) + "-" + strconv.FormatFloat(r.To, 'f', -1, 64)
	}
}

// processChanges names every process that was added or removed, and for
// the same id every change of policy, deployStrategy, replicas or port;
// order does not matter. Indexes are those of the new config, the file the
// operator edits.
func processChanges(cur, next []ProcessSettings) []string {
	byID := make(map[string]*ProcessSettings, len(cur))
	for i := range cur {
		byID[cur[i].ID] = &cur[i]
	}
	inNext := make(map[string]bool, len(next))
	var out []string
	for i := range next {
		n := &next[i]
		inNext[n.ID] = true
		name := fmt.Sprintf("processes[%d] %q: ", i, n.ID)
		c, ok := byID[n.ID]
		if !ok {
			out = append(out, name+"added")
			continue
		}
		var fields []string
		fields = append(fields, changedField("policy", c.Policy, n.Policy)...)
		fields = append(fields, changedField("deployStrategy", c.DeployStrategy, n.DeployStrategy)...)
		fields = append(fields, changedField("replicas", c.Replicas, n.Replicas)...)
		fields = append(fields, changedField("port", c.Port, n.Port)...)
		if len(fields) > 0 {
			out = append(out, name+strings.Join(fields, ", "))
		}
	}
	for i := range cur {
		if !inNext[cur[i].ID] {
			out = append(out, fmt.Sprintf("process %q: removed (the running daemon has it, the config does not)", cur[i].ID))
		}
	}
	return out
}
