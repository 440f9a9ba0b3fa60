package engine

import (
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// statusJSON is the status reply (daemon.md §7.2), without the leading
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
	}
	e.mu.Lock()
	plan := e.plan
	var activeID any
	if e.active != nil {
		activeID = e.active.ID
	}
	proxyPort := e.proxyPort
	views := make([]releaseView, 0, len(e.releases))
	for _, r := range e.releases {
		v := releaseView{r: r, state: r.getState(), ports: append([]PortAssignment(nil), r.ports...), procs: append([]*instance(nil), r.procs...)}
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
	serviceList := make([]jsconfig.Object, 0, len(services))
	for _, s := range services {
		serviceList = append(serviceList, named(s.inst.def.ID, s.inst))
	}
	singletonList := make([]jsconfig.Object, 0, len(singletons))
	for _, s := range singletons {
		singletonList = append(singletonList, named(s.inst.def.ID, s.inst))
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
		{Key: "releases", Value: releases},
		{Key: "services", Value: serviceList},
		{Key: "singletons", Value: singletonList},
	}...)
	return status
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
