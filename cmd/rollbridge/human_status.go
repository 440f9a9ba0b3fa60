package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// statusView is the part of a status reply the terminal form shows.
// Every field is optional: a Node.js daemon, or an older one, may leave
// any of them out, and the view then shows "-" or skips the line.
type statusView struct {
	ActiveReleaseID *string `json:"activeReleaseId"`
	Application     string  `json:"application"`
	Control         struct {
		Path string `json:"path"`
	} `json:"control"`
	DaemonRuntime struct {
		Version string `json:"version"`
	} `json:"daemonRuntime"`
	Orphans []struct {
		ID        string   `json:"id"`
		PID       *float64 `json:"pid"`
		ReleaseID *string  `json:"releaseId"`
	} `json:"orphans"`
	Proxy *struct {
		Host string   `json:"host"`
		Port *float64 `json:"port"`
	} `json:"proxy"`
	Readoption *readoptionView `json:"readoption"` // only after a start that re-adopted
	Releases   []releaseRow    `json:"releases"`
	Services   []namedProcess  `json:"services"`
	Singletons []namedProcess  `json:"singletons"`
	Traffic    *trafficView    `json:"traffic"` // only while not serving normally
}

// readoptionView is what a daemon that restarted after a crash took over
// (docs/troubleshooting.md#when-the-daemon-crashes).
type readoptionView struct {
	At           string            `json:"at"`
	NotReadopted []json.RawMessage `json:"notReadopted"`
	Processes    float64           `json:"processes"`
	Refused      *string           `json:"refused"`
	Releases     []string          `json:"releases"`
}

type releaseRow struct {
	ActivatedAt     string             `json:"activatedAt"`
	ConnectionCount float64            `json:"connectionCount"`
	DrainStartedAt  string             `json:"drainStartedAt"`
	Ports           map[string]float64 `json:"ports"`
	Processes       []processView      `json:"processes"`
	ReleaseID       string             `json:"releaseId"`
	Revision        *string            `json:"revision"`
	State           string             `json:"state"`
	StoppedAt       string             `json:"stoppedAt"`
}

type namedProcess struct {
	ID      string      `json:"id"`
	Process processView `json:"process"`
}

type processView struct {
	ExitCode        *float64 `json:"exitCode"`
	ExitSignal      *string  `json:"exitSignal"`
	ID              string   `json:"id"`
	LastStartReason string   `json:"lastStartReason"`
	MemoryRestarts  float64  `json:"memoryRestarts"`
	OutputCaptured  *bool    `json:"outputCaptured"`
	PID             *float64 `json:"pid"`
	Restarts        float64  `json:"restarts"`
	RSSBytes        *float64 `json:"rssBytes"`
	StartedAt       string   `json:"startedAt"`
	State           string   `json:"state"`
	UptimeMs        *float64 `json:"uptimeMs"`
}

// eventEntry is one record of the event log.
type eventEntry struct {
	At      string          `json:"at"`
	Data    json.RawMessage `json:"data"`
	Message string          `json:"message"`
}

// daemonFacts are what the CLI learns about the daemon besides its
// status: its pid (the socket's peer) and start, and the config used to
// find it. Zero values are left out of the view.
type daemonFacts struct {
	pid     int
	started time.Time
	config  string
	// rss measures a process group the daemon did not sample (one
	// without a memory block): runtime.GroupRSS; nil measures nothing.
	rss func(pid int, startedAt time.Time) (int64, bool)
}

// statusScreen renders a status reply for a person (docs/cli.md#status):
// the daemon, the releases, a table of the processes that run or should,
// orphans, and the last notable events.
func statusScreen(raw []byte, facts daemonFacts, plan *jsconfig.Plan, events []eventEntry, now time.Time, pal palette) (string, error) {
	var s statusView
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("cannot read the daemon's status (%v); run with --json to see it as it came", err)
	}
	var b strings.Builder

	// The daemon.
	name := termText(s.Application)
	if name == "" {
		name = "rollbridge"
	}
	head := []string{}
	if facts.pid > 0 {
		head = append(head, "pid "+strconv.Itoa(facts.pid))
	}
	if !facts.started.IsZero() {
		head = append(head, "up "+ago(now.Sub(facts.started)))
	}
	if s.DaemonRuntime.Version != "" {
		head = append(head, "version "+termText(s.DaemonRuntime.Version))
	}
	fmt.Fprintf(&b, "%s  %s\n", pal.bold(name), strings.TrimSpace("daemon "+strings.Join(head, ", ")))
	if s.Proxy != nil {
		addr := s.proxyAddress()
		if addr == "" { // no port reported: the host alone
			addr = termText(s.Proxy.Host)
		}
		active := pal.red("no active release (answers 503)")
		if s.ActiveReleaseID != nil {
			active = "→ " + termText(*s.ActiveReleaseID)
		}
		fmt.Fprintf(&b, "  proxy   %s %s\n", addr, active)
	}
	for i, line := range trafficLines(s.Traffic, now, pal) {
		label := "traffic"
		if i > 0 {
			label = "       "
		}
		fmt.Fprintf(&b, "  %s %s\n", label, line)
	}
	for i, line := range s.readoptionLines(now, pal) {
		label := "restart"
		if i > 0 {
			label = "       "
		}
		fmt.Fprintf(&b, "  %s %s\n", label, line)
	}
	if facts.config != "" {
		// The daemon does not report the config it loaded: this is the
		// one this command read to find the daemon's socket.
		fmt.Fprintf(&b, "  config  %s %s\n", termText(facts.config), pal.dim("(used by this command)"))
	}
	if s.Control.Path != "" {
		fmt.Fprintf(&b, "  socket  %s\n", termText(s.Control.Path))
	}

	// The releases, newest first: the one that matters is on top.
	if len(s.Releases) > 0 {
		b.WriteByte('\n')
		var t table
		t.add(plainCell("RELEASE"), plainCell("REVISION"), plainCell("STATE"), plainCell("AGE"), plainCell(""))
		for i := len(s.Releases) - 1; i >= 0; i-- {
			r := s.Releases[i]
			rev := "-"
			// Without --revision the daemon records the release id as the
			// revision: repeating it says nothing.
			if r.Revision != nil && *r.Revision != "" && *r.Revision != r.ReleaseID {
				rev = *r.Revision
			}
			age := "-"
			if at, ok := parseISO(r.ActivatedAt); ok {
				age = ago(now.Sub(at))
			}
			note := ""
			switch r.State {
			case "draining":
				note = counted(int(r.ConnectionCount), "open connection", "open connections")
				if at, ok := parseISO(r.DrainStartedAt); ok {
					note += ", draining for " + ago(now.Sub(at))
				}
			case "stopped":
				if at, ok := parseISO(r.StoppedAt); ok {
					note = "stopped " + ago(now.Sub(at)) + " ago"
				}
			case "active":
				if r.ConnectionCount > 0 {
					note = counted(int(r.ConnectionCount), "open connection", "open connections")
				}
			}
			state := termText(r.State)
			t.add(plainCell(r.ReleaseID), plainCell(rev), cell{state, pal.state(state)}, plainCell(age), cell{note, pal.dim(note)})
		}
		t.write(&b)
	}

	// The processes that run or should: those of releases that are not
	// stopped, then singletons and services.
	var t table
	t.add(plainCell("PROCESS"), plainCell("RELEASE"), plainCell("POLICY"), plainCell("PID"), plainCell("STATE"),
		plainCell("UPTIME"), plainCell("RESTARTS"), plainCell("RSS"), plainCell("PORT"))
	var activePorts map[string]float64
	for _, r := range s.Releases {
		if s.ActiveReleaseID != nil && r.ReleaseID == *s.ActiveReleaseID {
			activePorts = r.Ports
		}
	}
	row := func(p processView, release, policy string, ports map[string]float64) {
		pid, uptime, rss, port := "-", "-", "-", "-"
		if p.PID != nil {
			pid = strconv.FormatFloat(*p.PID, 'f', -1, 64)
		}
		if p.UptimeMs != nil {
			uptime = ago(time.Duration(*p.UptimeMs) * time.Millisecond)
		}
		if p.RSSBytes != nil {
			rss = bytesIEC(*p.RSSBytes)
		} else if at, ok := parseISO(p.StartedAt); ok && p.PID != nil && facts.rss != nil {
			if n, ok := facts.rss(int(*p.PID), at); ok {
				rss = bytesIEC(float64(n))
			}
		}
		if n, ok := ports[baseID(p.ID)]; ok {
			port = strconv.FormatFloat(n, 'f', -1, 64)
		}
		word := termText(p.State)
		state := word
		if state == "" {
			state = "-"
		}
		if (state == "stopped" || state == "failed") && (p.ExitCode != nil || p.ExitSignal != nil) {
			state += " (" + exitText(p.ExitCode, p.ExitSignal) + ")"
		}
		t.add(plainCell(p.ID), plainCell(release), plainCell(policy), plainCell(pid), cell{state, pal.state(word) + strings.TrimPrefix(state, word)},
			plainCell(uptime), plainCell(restartsText(p)), plainCell(rss), plainCell(port))
	}
	policies := planPolicies(plan)
	policyOf := func(id, fallback string) string {
		if p, ok := policies[baseID(id)]; ok {
			return p
		}
		return fallback
	}
	for i := len(s.Releases) - 1; i >= 0; i-- {
		r := s.Releases[i]
		if r.State == "stopped" {
			continue
		}
		for _, p := range r.Processes {
			row(p, r.ReleaseID, policyOf(p.ID, "-"), r.Ports)
		}
	}
	for _, e := range s.Singletons {
		row(e.Process, "-", "singleton", activePorts)
	}
	for _, e := range s.Services {
		row(e.Process, "-", "service", activePorts)
	}
	b.WriteByte('\n')
	if len(t.rows) == 1 {
		b.WriteString("No processes running. Deploy a release with \"rollbridge deploy --release-path <path>\".\n")
	} else {
		t.write(&b)
	}

	if len(s.Orphans) > 0 {
		fmt.Fprintf(&b, "\n%s (left by an earlier daemon; see \"rollbridge recover\"):\n", pal.yellow(counted(len(s.Orphans), "orphaned process", "orphaned processes")))
		for _, o := range s.Orphans {
			line := "  " + termText(o.ID)
			if o.PID != nil {
				line += " pid " + strconv.FormatFloat(*o.PID, 'f', -1, 64)
			}
			if o.ReleaseID != nil {
				line += " release " + termText(*o.ReleaseID)
			}
			b.WriteString(line + "\n")
		}
	}

	if notable := notableEvents(events, 5); len(notable) > 0 {
		b.WriteString("\nRecent problems (all events: rollbridge events):\n")
		for _, e := range notable {
			at, _ := parseISO(e.At)
			sameDay := at.In(now.Location()).Format("2006-01-02") == now.Format("2006-01-02")
			b.WriteString("  " + eventLine(e, pal, !sameDay, now.Location()) + "\n")
		}
	}
	return b.String(), nil
}

// restartsText is the restart counters with the last start reason when
// that was not the deploy: "2 (crash)", "0", "1 + 1 memory (memory)".
func restartsText(p processView) string {
	s := strconv.FormatFloat(p.Restarts, 'f', -1, 64)
	if p.MemoryRestarts > 0 {
		s += " + " + strconv.FormatFloat(p.MemoryRestarts, 'f', -1, 64) + " memory"
	}
	if p.LastStartReason != "" && p.LastStartReason != "deploy" {
		s += " (last: " + termText(p.LastStartReason) + ")"
	}
	return s
}

// exitText is "code 3", "SIGKILL".
func exitText(code *float64, signal *string) string {
	switch {
	case signal != nil:
		return termText(*signal)
	case code != nil:
		return "code " + strconv.FormatFloat(*code, 'f', -1, 64)
	}
	return "exited"
}

// baseID is the process id of an instance id: "worker" for "worker#1".
func baseID(id string) string {
	if i := strings.LastIndexByte(id, '#'); i > 0 {
		return id[:i]
	}
	return id
}

// planPolicies maps each process id of the config to its policy.
func planPolicies(plan *jsconfig.Plan) map[string]string {
	out := map[string]string{}
	if plan == nil {
		return out
	}
	for _, p := range plan.Processes {
		out[p.ID] = string(p.Policy)
	}
	return out
}

// parseISO reads a time as the daemon writes it (status, events,
// operations).
func parseISO(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// notableMessages are the events a person checking on the daemon wants
// to see: failures, crash and memory trouble. Routine steps (deploys that
// worked, switches, stops) are left to "rollbridge events".
var notableMessages = map[string]bool{
	"deploy failed":                             true,
	"singleton replacement failed":              true,
	"restart limit reached":                     true,
	"process restart failed":                    true,
	"process stop timed out; sending SIGKILL":   true,
	"memory warning":                            true,
	"memory limit exceeded":                     true,
	"memory restart failed":                     true,
	"listener failed":                           true,
	"accept failed":                             true,
	"metrics listener failed":                   true,
	"state persist failed":                      true,
	"state file unreadable":                     true,
	"state file untrusted":                      true,
	"orphaned processes from a previous daemon": true,
	"bootstrap activation failed":               true,
}

// notableEvents picks the last n notable events, oldest first. A crash
// is the exit before a "process started" with reason "crash".
func notableEvents(events []eventEntry, n int) []eventEntry {
	var out []eventEntry
	lastExit := map[string]eventEntry{}
	for _, e := range events {
		var d struct {
			ProcessID string `json:"processId"`
			Reason    string `json:"reason"`
		}
		_ = json.Unmarshal(e.Data, &d)
		switch {
		case notableMessages[e.Message]:
			out = append(out, e)
		case e.Message == "process exited":
			lastExit[d.ProcessID] = e
		case e.Message == "process started" && d.Reason == "crash":
			if exit, ok := lastExit[d.ProcessID]; ok {
				exit.Message = "process crashed"
				out = append(out, exit)
			}
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// trafficLines say what the proxy does with requests when that is not
// forwarding them (docs/cli.md#status): maintenance, a pause (held or
// expired), a deploy's hold. None while traffic flows normally.
func trafficLines(t *trafficView, now time.Time, pal palette) []string {
	if t == nil || t.State == "serving" || t.State == "" {
		return nil
	}
	var lines []string
	held := counted(int(t.HeldRequests), "held request", "held requests")
	since := func(iso string) string {
		if at, ok := parseISO(iso); ok {
			return " since " + clock(at, now) + " (" + ago(now.Sub(at)) + ")"
		}
		return ""
	}
	if m := t.Maintenance; m != nil {
		msg := termText(m.Message) // quoted already when it is not printable
		if msg == m.Message {
			msg = `"` + msg + `"`
		}
		lines = append(lines, fmt.Sprintf("%s%s: 503 with Retry-After %s and %s",
			pal.red("maintenance"), since(m.EnabledAt), strconv.FormatFloat(m.RetryAfterSeconds, 'f', -1, 64), msg))
	}
	if p := t.Paused; p != nil {
		at, ok := parseISO(p.ExpiresAt)
		switch {
		case p.Expired && ok:
			lines = append(lines, fmt.Sprintf("%s at %s: requests get 503 until \"rollbridge resume\"", pal.red("pause expired"), clock(at, now)))
		case p.Expired:
			lines = append(lines, pal.red("pause expired")+": requests get 503 until \"rollbridge resume\"")
		case ok:
			lines = append(lines, fmt.Sprintf("%s%s, %s; expires at %s (in %s)", pal.yellow("paused"), since(p.PausedAt), held, clock(at, now), ago(at.Sub(now))))
		default:
			lines = append(lines, fmt.Sprintf("%s%s, %s", pal.yellow("paused"), since(p.PausedAt), held))
		}
	}
	if h := t.DeployHold; h != nil {
		line := fmt.Sprintf("%s by the deploy of release %s%s, %s", pal.yellow("held"), termText(h.ReleaseID), since(h.HeldAt), held)
		if at, ok := parseISO(h.ExpiresAt); ok {
			// The hold ends then at the latest, switched or called off.
			line += "; --max-pause runs out at " + clock(at, now)
		}
		lines = append(lines, line)
	}
	return lines
}

// readoptionLines say what a daemon that restarted after a crash took
// over, and what it could not: none after an ordinary start.
func (s *statusView) readoptionLines(now time.Time, pal palette) []string {
	r := s.Readoption
	if r == nil {
		return nil
	}
	when := ""
	if at, ok := parseISO(r.At); ok {
		when = " " + ago(now.Sub(at)) + " ago"
	}
	if r.Refused != nil {
		return []string{pal.red("nothing was re-adopted after the previous daemon ended" + when + ": " + termText(*r.Refused))}
	}
	releases := "no release"
	if len(r.Releases) > 0 {
		releases = termText(strings.Join(r.Releases, ", "))
	}
	lines := []string{fmt.Sprintf("re-adopted %s (%s)%s from the previous daemon", releases, counted(int(r.Processes), "process", "processes"), when)}
	lost := 0
	for _, p := range s.allProcesses() {
		if p.OutputCaptured != nil && !*p.OutputCaptured {
			lost++
		}
	}
	if lost > 0 {
		lines = append(lines, pal.yellow(fmt.Sprintf("output of %s not captured: their pipes were lost with the previous daemon", counted(lost, "process", "processes"))))
	}
	if n := len(r.NotReadopted); n > 0 {
		lines = append(lines, pal.yellow(fmt.Sprintf("%s not re-adopted (listed as orphans)", counted(n, "process", "processes"))))
	}
	return lines
}

// allProcesses lists the processes of every release, service and
// singleton.
func (s *statusView) allProcesses() []processView {
	var out []processView
	for _, r := range s.Releases {
		out = append(out, r.Processes...)
	}
	for _, n := range append(append([]namedProcess(nil), s.Services...), s.Singletons...) {
		out = append(out, n.Process)
	}
	return out
}
