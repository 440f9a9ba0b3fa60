// Package engine is the rollbridge daemon: releases, policies, deploys,
// template rendering and the environment handed to managed processes.
package engine

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// placeholder matches {{ key }}: a key of [A-Za-z0-9_.-] with optional
// JavaScript whitespace (\s in JS includes NBSP, BOM and the Unicode spaces).
var placeholder = regexp.MustCompile(`\{\{[\s\x0B\x{00A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}]*([A-Za-z0-9_.\-]+)[\s\x0B\x{00A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}]*\}\}`)

// MissingValueError is returned when a placeholder has no value.
type MissingValueError struct {
	Placeholder string // as written, braces and inner whitespace included
}

func (e *MissingValueError) Error() string {
	return "Missing template value for " + e.Placeholder
}

// PortAssignment is a port allocated to a process in a release.
type PortAssignment struct {
	ID   string
	Port int
}

// TemplateContext holds the values templates can reference
// (docs/config.md#82-variables). It describes one process of one release.
type TemplateContext struct {
	Application  string
	ReleaseID    string
	ReleasePath  string // as passed to deploy, not made absolute
	Revision     string
	ProcessID    string // the base id, without #index
	ReplicaIndex int
	ReplicaCount int
	Port         *int             // nil when the process has no port
	Ports        []PortAssignment // every allocated port of the release, in config order
	Proxy        jsconfig.Proxy
	// LookupEnv reads the daemon's environment at render time.
	LookupEnv func(string) (string, bool)
}

// Render substitutes every placeholder in s in a single pass: substituted
// text is never scanned again. It stops at the first missing value.
func (c *TemplateContext) Render(s string) (string, error) { return c.render(s, false) }

// RenderShown is Render for display (status, events, the daemon log): a
// value taken from the daemon's environment appears as {{env.NAME}}, so a
// secret passed into a command that way is never shown. Missing values
// fail as in Render.
func (c *TemplateContext) RenderShown(s string) (string, error) { return c.render(s, true) }

func (c *TemplateContext) render(s string, shown bool) (string, error) {
	matches := placeholder.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return s, nil
	}
	var b strings.Builder
	last := 0
	for _, m := range matches {
		key := s[m[2]:m[3]]
		v, ok := c.lookup(key)
		if !ok {
			return "", &MissingValueError{Placeholder: s[m[0]:m[1]]}
		}
		if name, fromEnv := strings.CutPrefix(key, "env."); shown && fromEnv && !strings.Contains(name, ".") {
			v = "{{env." + name + "}}"
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(v)
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String(), nil
}

// objectText is how JavaScript prints an object interpolated into a string
// (as the Node.js rollbridge renders {{ports}}, {{env}} and {{proxy}}).
const objectText = "[object Object]"

// lookup resolves a dotted key. Only own data keys resolve, never JavaScript
// built-ins such as toString (the Node.js rollbridge rendered their source),
// and walking into a string or number is missing.
func (c *TemplateContext) lookup(key string) (string, bool) {
	segs := strings.Split(key, ".")
	for _, s := range segs {
		if s == "" {
			return "", false
		}
	}
	head, rest := segs[0], segs[1:]
	leaf := func(v string) (string, bool) { return v, len(rest) == 0 }
	switch head {
	case "application":
		return leaf(c.Application)
	case "releaseId":
		return leaf(c.ReleaseID)
	case "releasePath":
		return leaf(c.ReleasePath)
	case "revision":
		return leaf(c.Revision)
	case "processId":
		return leaf(c.ProcessID)
	case "replicaIndex":
		return leaf(strconv.Itoa(c.ReplicaIndex))
	case "replicaCount":
		return leaf(strconv.Itoa(c.ReplicaCount))
	case "port":
		if c.Port == nil {
			return "", false
		}
		return leaf(strconv.Itoa(*c.Port))
	case "ports":
		switch len(rest) {
		case 0:
			return objectText, true
		case 1:
			// A later process with the same id wins, as object keys do.
			found, port := false, 0
			for _, p := range c.Ports {
				if p.ID == rest[0] {
					found, port = true, p.Port
				}
			}
			return strconv.Itoa(port), found
		}
	case "proxy":
		switch {
		case len(rest) == 0:
			return objectText, true
		case len(rest) > 1:
			return "", false
		case rest[0] == "host":
			return c.Proxy.Host, true
		case rest[0] == "port":
			return strconv.Itoa(c.Proxy.Port), true
		case rest[0] == "upstreamHost":
			return c.Proxy.UpstreamHost, true
		}
	case "env":
		switch len(rest) {
		case 0:
			return objectText, true
		case 1:
			if c.LookupEnv == nil {
				return "", false
			}
			return c.LookupEnv(rest[0])
		}
	}
	return "", false
}

// RenderedProcess is a process definition ready to spawn.
type RenderedProcess struct {
	Command string
	// ShownCommand is Command as status and events show it: values from
	// the daemon's environment stay {{env.NAME}} (RenderShown).
	ShownCommand string
	// Cwd is what status shows: the rendered cwd as configured (values
	// from the environment shown as {{env.NAME}}), or the release path
	// when none is set (docs/processes.md).
	Cwd string
	// Dir is where the process runs: Cwd resolved against the release path
	// when relative, as doctor does (the Node.js daemon used its own working
	// directory: docs/config.md#10-differences-from-the-nodejs-rollbridge,
	// row 7), or the release path.
	Dir string
	// Env is the finished environment
	// (docs/config.md#84-environment-of-a-managed-process).
	Env []string
}

// RenderProcess renders command, cwd and env of p for one instance, then
// composes its environment on top of base (the daemon's own environment).
func RenderProcess(p *jsconfig.Process, c *TemplateContext, base []string) (*RenderedProcess, error) {
	r := &RenderedProcess{Dir: c.ReleasePath, Cwd: c.ReleasePath}
	var err error
	if r.Command, err = c.Render(p.Command); err != nil {
		return nil, err
	}
	if r.ShownCommand, err = c.RenderShown(p.Command); err != nil {
		return nil, err
	}
	if p.Cwd != nil && *p.Cwd != "" {
		cwd, err := c.Render(*p.Cwd)
		if err != nil {
			return nil, err
		}
		shown, err := c.RenderShown(*p.Cwd)
		if err != nil {
			return nil, err
		}
		switch {
		case cwd == "": // rendered empty: the release path, as an empty cwd is
		case filepath.IsAbs(cwd):
			r.Cwd, r.Dir = shown, cwd
		default:
			r.Cwd, r.Dir = shown, filepath.Join(c.ReleasePath, cwd)
		}
	}
	env := make([]jsconfig.EnvVar, 0, len(p.Env))
	for _, e := range p.Env {
		v, err := c.Render(e.Value)
		if err != nil {
			return nil, err
		}
		env = append(env, jsconfig.EnvVar{Name: e.Name, Value: v})
	}
	r.Env = ComposeEnv(base, c, env)
	return r, nil
}

// ComposeEnv layers the daemon's environment, the ROLLBRIDGE_* variables
// and the process's rendered env; later layers win.
func ComposeEnv(base []string, c *TemplateContext, env []jsconfig.EnvVar) []string {
	e := newEnvBuilder(base)
	e.set("ROLLBRIDGE_APPLICATION", c.Application)
	e.set("ROLLBRIDGE_PROCESS_ID", c.ProcessID)
	e.set("ROLLBRIDGE_RELEASE_ID", c.ReleaseID)
	e.set("ROLLBRIDGE_RELEASE_PATH", c.ReleasePath)
	e.set("ROLLBRIDGE_REVISION", c.Revision)
	e.set("ROLLBRIDGE_REPLICA_INDEX", strconv.Itoa(c.ReplicaIndex))
	e.set("ROLLBRIDGE_REPLICA_COUNT", strconv.Itoa(c.ReplicaCount))
	if c.Port != nil {
		e.set("ROLLBRIDGE_PORT", strconv.Itoa(*c.Port))
	}
	for _, p := range c.Ports {
		e.set(PortVariable(p.ID), strconv.Itoa(p.Port))
	}
	for _, v := range env {
		e.set(v.Name, v.Value)
	}
	return e.list()
}

// WithPID adds ROLLBRIDGE_PID, which lifecycle hooks receive last.
func WithPID(env []string, pid string) []string {
	e := newEnvBuilder(env)
	e.set("ROLLBRIDGE_PID", pid)
	return e.list()
}

var nonAlnumRun = regexp.MustCompile(`[^A-Za-z0-9]+`)

// PortVariable is ROLLBRIDGE_<ID>_PORT for a process id: every run of
// characters outside [A-Za-z0-9] becomes one "_", then ASCII upper case.
func PortVariable(id string) string {
	return "ROLLBRIDGE_" + strings.ToUpper(nonAlnumRun.ReplaceAllString(id, "_")) + "_PORT"
}

// envBuilder is an ordered environment where a later set replaces the
// value but keeps the variable's first position.
type envBuilder struct {
	keys []string
	vals map[string]string
}

func newEnvBuilder(base []string) *envBuilder {
	e := &envBuilder{vals: make(map[string]string, len(base)+16)}
	for _, kv := range base {
		if k, v, ok := strings.Cut(kv, "="); ok {
			e.set(k, v)
		}
	}
	return e
}

func (e *envBuilder) set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envBuilder) list() []string {
	out := make([]string, len(e.keys))
	for i, k := range e.keys {
		out[i] = k + "=" + e.vals[k]
	}
	return out
}
