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
	var changed, details []string
	diff := func(setting string, lines ...string) {
		if len(lines) > 0 {
			changed = append(changed, setting)
			details = append(details, lines...)
		}
	}
	diff("application", changedValue("application", quote(current.Application), quote(next.Application))...)
	diff("control", controlChanges(current.Control, next.Control)...)
	diff("statePath", changedValue("statePath", optionalString(current.StatePath), optionalString(next.StatePath))...)
	diff("proxy.host", changedValue("proxy.host", quote(current.Proxy.Host), quote(next.Proxy.Host))...)
	diff("proxy.port", changedValue("proxy.port", strconv.Itoa(current.Proxy.Port), strconv.Itoa(next.Proxy.Port))...)
	diff("proxy.upstreamHost", changedValue("proxy.upstreamHost", quote(current.Proxy.UpstreamHost), quote(next.Proxy.UpstreamHost))...)
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

func controlChanges(a, b Control) []string {
	var out []string
	out = append(out, changedValue("control.path", quote(a.Path), quote(b.Path))...)
	out = append(out, changedValue("control.mode", modeText(a.Mode), modeText(b.Mode))...)
	out = append(out, changedValue("control.owner", idOrNameText(a.Owner), idOrNameText(b.Owner))...)
	out = append(out, changedValue("control.group", idOrNameText(a.Group), idOrNameText(b.Group))...)
	return out
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
func processChanges(cur, next []Process) []string {
	byID := make(map[string]*Process, len(cur))
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
		fields = append(fields, changedField("policy", quote(string(c.Policy)), quote(string(n.Policy)))...)
		fields = append(fields, changedField("deployStrategy", quote(string(c.DeployStrategy)), quote(string(n.DeployStrategy)))...)
		fields = append(fields, changedField("replicas", strconv.Itoa(c.Replicas), strconv.Itoa(n.Replicas))...)
		fields = append(fields, changedField("port", portText(c.Port), portText(n.Port))...)
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
