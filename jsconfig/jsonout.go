package jsconfig

import (
	"bytes"
	"encoding/json"
	"io"
)

// Field is one key of an Object, in output order.
type Field struct {
	Key   string
	Value any
}

// Object is a JSON object whose keys are written in the given order, which
// is part of the CLI's output contract (Go maps would sort them).
type Object []Field

// MarshalJSON writes the fields in order without HTML escaping.
func (o Object) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, err := marshalNoHTML(f.Key)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		v, err := marshalNoHTML(f.Value)
		if err != nil {
			return nil, err
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// marshalNoHTML is json.Marshal without escaping <, > and &, as
// JSON.stringify writes them.
func marshalNoHTML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// WriteJSON writes v the way JSON.stringify(v, null, 2) does, followed by a
// newline: two-space indentation, no HTML escaping, raw UTF-8.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// MarshalJSON writes the normalized config with the reference's key order:
// alphabetical within each object (lifecycle commands excepted), unset
// optional keys omitted.
func (p *Plan) MarshalJSON() ([]byte, error) {
	o := Object{{"application", p.Application}, {"control", p.Control.object()}}
	if lt := p.LegacyTakeover; lt != nil {
		procs := make([]Object, 0, len(lt.Processes))
		for _, lp := range lt.Processes {
			procs = append(procs, Object{{"includes", nonNil(lp.Includes)}, {"name", lp.Name}})
		}
		o = append(o, Field{"legacyTakeover", Object{
			{"forceStopTimeoutMs", Number(lt.ForceStopTimeoutMs)},
			{"processes", procs},
			{"screens", nonNil(lt.Screens)},
		}})
	}
	procs := make([]Object, 0, len(p.Processes))
	for i := range p.Processes {
		procs = append(procs, p.Processes[i].object())
	}
	o = append(o,
		Field{"processes", procs},
		Field{"proxy", Object{
			{"drainTimeoutMs", Number(p.Proxy.DrainTimeoutMs)},
			{"forceStopTimeoutMs", Number(p.Proxy.ForceStopTimeoutMs)},
			{"healthPath", p.Proxy.HealthPath},
			{"healthTimeoutMs", Number(p.Proxy.HealthTimeoutMs)},
			{"host", p.Proxy.Host},
			{"port", p.Proxy.Port},
			{"upstreamHost", p.Proxy.UpstreamHost},
		}},
		Field{"releaseRetention", Object{
			{"keep", p.ReleaseRetention.Keep},
			{"maxAgeMs", Number(p.ReleaseRetention.MaxAgeMs)},
		}},
	)
	if p.StatePath != "" {
		o = append(o, Field{"statePath", p.StatePath})
	}
	return o.MarshalJSON()
}

// ControlJSON is the normalized control object as status echoes it.
func (c Control) ControlJSON() Object { return c.object() }

func (c Control) object() Object {
	var o Object
	if c.Group != nil {
		o = append(o, Field{"group", c.Group.value()})
	}
	if c.Mode != nil {
		o = append(o, Field{"mode", *c.Mode})
	}
	if c.Owner != nil {
		o = append(o, Field{"owner", c.Owner.value()})
	}
	return append(o, Field{"path", c.Path})
}

func (v IDOrName) value() any {
	if v.IsName() {
		return v.Name
	}
	return Number(v.ID)
}

func (p *Process) object() Object {
	env := make(Object, 0, len(p.Env))
	for _, e := range p.Env {
		env = append(env, Field{e.Name, e.Value})
	}
	o := Object{{"command", p.Command}}
	if p.Cwd != nil {
		o = append(o, Field{"cwd", *p.Cwd})
	}
	o = append(o, Field{"deployStrategy", string(p.DeployStrategy)}, Field{"env", env})
	if p.GracefulStop.Indefinite {
		o = append(o, Field{"gracefulStopMs", "indefinite"})
	} else {
		o = append(o, Field{"gracefulStopMs", Number(p.GracefulStop.Ms)})
	}
	if h := p.Health; h != nil {
		o = append(o, Field{"health", Object{
			{"intervalMs", Number(h.IntervalMs)},
			{"path", h.Path},
			{"startDelayMs", Number(h.StartDelayMs)},
			{"timeoutMs", Number(h.TimeoutMs)},
		}})
	}
	lc := Object{{"drainTimeoutMs", Number(p.Lifecycle.DrainTimeoutMs)}}
	for _, c := range []struct {
		key string
		val *string
	}{{"quietCommand", p.Lifecycle.QuietCommand}, {"drainCommand", p.Lifecycle.DrainCommand}, {"stopCommand", p.Lifecycle.StopCommand}} {
		if c.val != nil {
			lc = append(lc, Field{c.key, *c.val})
		}
	}
	o = append(o, Field{"id", p.ID}, Field{"lifecycle", lc})
	if m := p.Memory; m != nil {
		o = append(o, Field{"memory", Object{
			{"checkIntervalMs", Number(m.CheckIntervalMs)},
			{"limitBytes", Number(m.LimitBytes)},
			{"warnBytes", Number(m.WarnBytes)},
		}})
	}
	o = append(o,
		Field{"nonBlockingDrain", p.NonBlockingDrain},
		Field{"outputLines", p.OutputLines},
		Field{"policy", string(p.Policy)},
	)
	if p.Port != nil {
		o = append(o, Field{"port", Object{{"from", p.Port.From}, {"to", Number(p.Port.To)}}})
	}
	restart := Object{
		{"backoffFactor", Number(p.Restart.BackoffFactor)},
		{"maxDelayMs", Number(p.Restart.MaxDelayMs)},
	}
	if p.Restart.MaxRestarts != nil {
		restart = append(restart, Field{"maxRestarts", *p.Restart.MaxRestarts})
	}
	restart = append(restart, Field{"windowMs", Number(p.Restart.WindowMs)})
	return append(o,
		Field{"replicas", p.Replicas},
		Field{"restart", restart},
		Field{"restartDelayMs", Number(p.RestartDelayMs)},
		Field{"stopSignal", p.StopSignal},
	)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
