package engine

import (
	"sort"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// statusJSON is the status reply (docs/cli.md#status), without the leading
// "status" key.
func (e *Engine) statusJSON() ([]byte, error) { return e.statusObject(false).MarshalJSON() }

// persistedStatus renders a process as the state file records it.
type persistedStatus struct{ runtime.Status }

func (s persistedStatus) MarshalJSON() ([]byte, error) { return s.Status.MarshalStateJSON() }

// statusObject builds the status object; forState renders processes and
// orphans as the state file records them. The model is copied under the
// lock; processes and counters are read after it, so status never waits
// for a deploy. Orphans that died meanwhile are dropped for good.
func (e *Engine) statusObject(forState bool) jsconfig.Object {
	procStatus := func(in *instance) any {
		if forState {
			return persistedStatus{in.proc.Status()}
		}
		return in.proc.Status()
	}
	orphans := make([]jsconfig.Object, 0)
	for _, o := range e.orphanList() {
		orphans = append(orphans, o.object(forState))
	}
	type releaseView struct {
		r                                      *Release
		state                                  releaseState
		activatedAt, drainStartedAt, stoppedAt string
		ports                                  []PortAssignment
		procs                                  []*instance
		beforeSwitch                           *runtime.Hook
	}
	e.mu.Lock()
	plan := e.plan
	var activeID any
	if e.active != nil {
		activeID = e.active.ID
	}
	proxyPort := e.proxyPort
	readopted := e.readoption
	listed := e.releases
	if forState {
		// The state file also records what status does not show: a
		// release still starting and one superseded by a deploy of the same
		// id, so a crash at any step leaves every process on record.
		listed = append(append([]*Release(nil), e.releases...), sortedReleases(e.starting)...)
		listed = append(listed, sortedReleases(e.retiring)...)
	}
	views := make([]releaseView, 0, len(listed))
	for _, r := range listed {
		v := releaseView{r: r, state: r.getState(), ports: append([]PortAssignment(nil), r.ports...), procs: append([]*instance(nil), r.procs...), beforeSwitch: r.beforeSwitch}
		if !r.activatedAt.IsZero() {
			v.activatedAt = runtime.ISOTime(r.activatedAt)
		}
		if !r.drainStartedAt.IsZero() {
			v.drainStartedAt = runtime.ISOTime(r.drainStartedAt)
		}
		if !r.stoppedAt.IsZero() {
			v.stoppedAt = runtime.ISOTime(r.stoppedAt)
		}
		views = append(views, v)
	}
	services := append([]*serviceEntry(nil), e.services...)
	singletons := append([]*singletonEntry(nil), e.singletons...)
	e.mu.Unlock()

	releases := make([]jsconfig.Object, 0, len(views))
	for _, v := range views {
		var httpCount, wsCount int64
		if v.r.target != nil {
			httpCount, wsCount = v.r.target.Connections()
		}
		o := jsconfig.Object{}
		if v.activatedAt != "" {
			o = append(o, jsconfig.Field{Key: "activatedAt", Value: v.activatedAt})
		}
		o = append(o,
			jsconfig.Field{Key: "connectionCount", Value: httpCount + wsCount},
			jsconfig.Field{Key: "connections", Value: jsconfig.Object{{Key: "http", Value: httpCount}, {Key: "websocket", Value: wsCount}}},
		)
		if v.drainStartedAt != "" {
			o = append(o, jsconfig.Field{Key: "drainStartedAt", Value: v.drainStartedAt})
		}
		ports := make(jsconfig.Object, 0, len(v.ports))
		for _, p := range v.ports {
			ports = setField(ports, p.ID, p.Port)
		}
		procs := make([]any, 0, len(v.procs))
		for _, in := range v.procs {
			procs = append(procs, procStatus(in))
			if forState {
				for _, h := range in.proc.Hooks() {
					procs = append(procs, hookEntry(in, h))
				}
			}
		}
		if forState && v.beforeSwitch != nil {
			procs = append(procs, hookRecord(beforeSwitchID(v.r), *v.beforeSwitch))
		}
		o = append(o,
			jsconfig.Field{Key: "ports", Value: ports},
			jsconfig.Field{Key: "processes", Value: procs},
			jsconfig.Field{Key: "releaseId", Value: v.r.ID},
			jsconfig.Field{Key: "releasePath", Value: v.r.Path},
			jsconfig.Field{Key: "revision", Value: v.r.Revision},
			jsconfig.Field{Key: "state", Value: v.state.String()},
		)
		if v.stoppedAt != "" {
			o = append(o, jsconfig.Field{Key: "stoppedAt", Value: v.stoppedAt})
		}
		releases = append(releases, o)
	}
	named := func(id string, in *instance) jsconfig.Object {
		return jsconfig.Object{{Key: "id", Value: id}, {Key: "process", Value: procStatus(in)}}
	}
	// In the state file a running hook is one more entry of the same
	// kind, so any reader of the file (also the Node.js rollbridge's)
	// finds it.
	withHooks := func(list []jsconfig.Object, in *instance) []jsconfig.Object {
		if forState {
			for _, h := range in.proc.Hooks() {
				list = append(list, jsconfig.Object{{Key: "id", Value: hookID(in, h)}, {Key: "process", Value: hookEntry(in, h)}})
			}
		}
		return list
	}
	serviceList := make([]jsconfig.Object, 0, len(services))
	for _, s := range services {
		serviceList = append(serviceList, named(s.inst.def.ID, s.inst))
		serviceList = withHooks(serviceList, s.inst)
	}
	singletonList := make([]jsconfig.Object, 0, len(singletons))
	for _, s := range singletons {
		singletonList = append(singletonList, named(s.inst.def.ID, s.inst))
		singletonList = withHooks(singletonList, s.inst)
	}
	status := jsconfig.Object{
		{Key: "activeReleaseId", Value: activeID},
		{Key: "application", Value: plan.Application},
	}
	if b := e.opts.Bootstrap; b != nil {
		status = append(status, jsconfig.Field{Key: "bootstrap", Value: b.object()})
	}
	status = append(status, jsconfig.Object{
		{Key: "control", Value: plan.Control.ControlJSON()},
		{Key: "daemonRuntime", Value: e.opts.Identity.object()},
		{Key: "orphans", Value: orphans},
		{Key: "proxy", Value: jsconfig.Object{
			{Key: "host", Value: plan.Proxy.Host},
			{Key: "port", Value: proxyPort},
			{Key: "upstreamHost", Value: plan.Proxy.UpstreamHost},
		}},
	}...)
	// Only after a start that re-adopted (or tried to): the usual status
	// is unchanged for the scripts that parse it.
	if readopted != nil && !forState {
		status = append(status, jsconfig.Field{Key: "readoption", Value: readopted.object()})
	}
	status = append(status, jsconfig.Object{
		{Key: "releases", Value: releases},
		{Key: "services", Value: serviceList},
		{Key: "singletons", Value: singletonList},
	}...)
	// Only while requests do not flow normally: the usual status is
	// unchanged for the scripts that parse it.
	if t := e.trafficObject(forState); t != nil {
		status = append(status, jsconfig.Field{Key: "traffic", Value: t})
	}
	return status
}

// hookID names a running hook of in: "<instance id> <hook label>".
func hookID(in *instance, h runtime.Hook) string { return in.id + " " + h.Label }

// hookEntry is a running lifecycle hook as the state file records it:
// {hook, id: "<instance id> <hook>", pgid, pid, startTime, state}.
func hookEntry(in *instance, h runtime.Hook) jsconfig.Object { return hookRecord(hookID(in, h), h) }

// beforeSwitchLabel is the "hook" of a running --before-switch command's
// entry in the state file.
const beforeSwitchLabel = "before-switch command"

// beforeSwitchID names the running --before-switch command of a deploy
// of r: "<release id> before-switch command".
func beforeSwitchID(r *Release) string { return r.ID + " " + beforeSwitchLabel }

// hookRecord is a running hook command, called id, as the state file
// records it.
func hookRecord(id string, h runtime.Hook) jsconfig.Object {
	o := jsconfig.Object{
		{Key: "hook", Value: h.Label},
		{Key: "id", Value: id},
		{Key: "pgid", Value: h.PID}, // a hook leads its own group
		{Key: "pid", Value: h.PID},
	}
	if h.StartTime != 0 {
		o = append(o, jsconfig.Field{Key: "startTime", Value: h.StartTime})
	}
	return append(o, jsconfig.Field{Key: "state", Value: string(runtime.StateRunning)})
}

// sortedReleases lists a set of releases by id, for a stable file.
func sortedReleases(set map[*Release]struct{}) []*Release {
	list := make([]*Release, 0, len(set))
	for r := range set {
		list = append(list, r)
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list
}

// setField sets key in o (replacing an earlier value in place, as a
// JavaScript object assignment would).
func setField(o jsconfig.Object, key string, v any) jsconfig.Object {
	for i := range o {
		if o[i].Key == key {
			o[i].Value = v
			return o
		}
	}
	return append(o, jsconfig.Field{Key: key, Value: v})
}

// eventsJSON is the events reply: {"events":[…]}.
func (e *Engine) eventsJSON(limit float64, limited bool) ([]byte, error) {
	return jsconfig.Object{{Key: "events", Value: joinEvents(e.events.recent(limit, limited))}}.MarshalJSON()
}
