package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// The one-to-five-line summaries of the commands on a terminal
// (docs/cli.md#output-for-people-and-for-scripts). Each is built from the
// command's reply and, where the reply is terse, from a status read right
// after it; a fact neither holds is left out, never guessed. Every id,
// revision, state and name from the daemon goes through termText.

// parsedStatus reads a status reply; nil when there is none or it cannot
// be read.
func parsedStatus(raw []byte) *statusView {
	if len(raw) == 0 {
		return nil
	}
	var s statusView
	if json.Unmarshal(raw, &s) != nil {
		return nil
	}
	return &s
}

func (s *statusView) release(id string) *releaseRow {
	if s == nil {
		return nil
	}
	for i := range s.Releases {
		if s.Releases[i].ReleaseID == id {
			return &s.Releases[i]
		}
	}
	return nil
}

// proxyAddress is "127.0.0.1:8080", "" when the status does not say.
func (s *statusView) proxyAddress() string {
	if s == nil || s.Proxy == nil || s.Proxy.Port == nil {
		return ""
	}
	return termText(net.JoinHostPort(s.Proxy.Host, strconv.FormatFloat(*s.Proxy.Port, 'f', -1, 64)))
}

// switchSummary summarises a deploy or rollback reply
// ({activeReleaseId, previousReleaseId}) with the status after it:
//
//	Deployed r2 (rev abc1234): active on 127.0.0.1:8080
//	  previous r1 draining, 3 open connections
func switchSummary(verb string, reply, status []byte, pal palette) string {
	var r struct {
		Active   string  `json:"activeReleaseId"`
		Previous *string `json:"previousReleaseId"`
	}
	if json.Unmarshal(reply, &r) != nil || r.Active == "" {
		return ""
	}
	s := parsedStatus(status)
	line := verb + " " + pal.bold(termText(r.Active))
	// Without --revision the daemon records the release id as the
	// revision: repeating it says nothing.
	if rel := s.release(r.Active); rel != nil && rel.Revision != nil && *rel.Revision != "" && *rel.Revision != r.Active {
		line += " (rev " + termText(*rel.Revision) + ")"
	}
	line += ": " + pal.green("active")
	if addr := s.proxyAddress(); addr != "" {
		line += " on " + addr
	}
	lines := []string{line}
	switch {
	case r.Previous == nil:
		lines = append(lines, "  no previous release")
	case s.release(*r.Previous) == nil:
		lines = append(lines, "  previous "+termText(*r.Previous))
	default:
		prev := s.release(*r.Previous)
		text := "  previous " + termText(*r.Previous) + " " + pal.state(termText(prev.State))
		if prev.State == "draining" {
			text += ", " + counted(int(prev.ConnectionCount), "open connection", "open connections")
		}
		lines = append(lines, text)
	}
	// "active" alone would read as "clients reach it": say so when a
	// pause or maintenance keeps them from it (a deploy ends neither).
	if s != nil {
		for _, l := range trafficLines(s.Traffic, time.Now(), pal) {
			lines = append(lines, "  traffic "+l)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// restartSummary summarises a restart reply ({restarted: [ids]}).
func restartSummary(reply []byte) string {
	var r struct {
		Restarted []string `json:"restarted"`
	}
	if json.Unmarshal(reply, &r) != nil {
		return ""
	}
	if len(r.Restarted) == 0 {
		return "Restarted nothing: no running companion, singleton or service matched.\n"
	}
	ids := make([]string, len(r.Restarted))
	for i, id := range r.Restarted {
		ids[i] = termText(id)
	}
	return "Restarted " + counted(len(r.Restarted), "process", "processes") + ": " + strings.Join(ids, ", ") + "\n"
}

// stopSummary summarises a stop of release id ("" for the active one):
// its reply is the status after it, and before is the status before it
// (to tell which release it stopped and whether that one was serving).
func stopSummary(id string, before, reply []byte, pal palette) string {
	after := parsedStatus(reply)
	if after == nil {
		return ""
	}
	prior := parsedStatus(before)
	if id == "" && prior != nil && prior.ActiveReleaseID != nil {
		id = *prior.ActiveReleaseID
	}
	var name string
	switch {
	case id == "" && prior == nil:
		// The status before the stop could not be read: which release
		// was active is not known.
		name = "the active release"
	case id == "":
		return "No release was active; nothing was stopped.\n"
	default:
		name = "release " + termText(id)
	}
	var lines []string
	was := prior.release(id)
	switch {
	case was != nil && was.State == "stopped":
		lines = append(lines, "Release "+termText(id)+" was already stopped.")
	case was != nil:
		n := 0
		for _, p := range was.Processes {
			if p.PID != nil {
				n++
			}
		}
		lines = append(lines, fmt.Sprintf("Stopped %s (%s, was %s).", name, counted(n, "process", "processes"), termText(was.State)))
	default:
		lines = append(lines, "Stopped "+name+".")
	}
	if after.ActiveReleaseID == nil {
		lines = append(lines, pal.red("No release is active: the proxy answers 503")+" until the next deploy or rollback.")
	} else {
		lines = append(lines, "Active release: "+termText(*after.ActiveReleaseID))
	}
	return strings.Join(lines, "\n") + "\n"
}

// shutdownSummary summarises a shutdown with the status before it.
func shutdownSummary(before []byte) string {
	s := parsedStatus(before)
	if s == nil {
		return "The daemon has shut down and stopped every process it ran.\n"
	}
	n := 0
	count := func(p processView) {
		if p.PID != nil {
			n++
		}
	}
	for _, r := range s.Releases {
		for _, p := range r.Processes {
			count(p)
		}
	}
	for _, e := range s.Singletons {
		count(e.Process)
	}
	for _, e := range s.Services {
		count(e.Process)
	}
	name := "The daemon"
	if s.Application != "" {
		name = "The daemon of " + termText(s.Application)
	}
	line := name + " has shut down; every process it ran has stopped (" + counted(n, "process was", "processes were") + " running)."
	return line + "\n"
}

// ensureSummary summarises ensure-daemon with the status it printed.
func ensureSummary(status []byte, started bool, pid int) string {
	s := parsedStatus(status)
	if s == nil {
		return ""
	}
	what := "Daemon already running"
	if started {
		what = "Started the daemon"
	}
	var facts []string
	if pid > 0 {
		facts = append(facts, "pid "+strconv.Itoa(pid))
	}
	if s.DaemonRuntime.Version != "" {
		facts = append(facts, "version "+termText(s.DaemonRuntime.Version))
	}
	line := what
	if len(facts) > 0 {
		line += " (" + strings.Join(facts, ", ") + ")"
	}
	if addr := s.proxyAddress(); addr != "" {
		line += ": proxy on " + addr
	}
	active := "no active release"
	if s.ActiveReleaseID != nil {
		active = "active release " + termText(*s.ActiveReleaseID)
	}
	return line + ", " + active + "\n"
}
