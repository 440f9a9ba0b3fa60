package jsconfig

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Defaults of the config (docs/config.md#4-top-level-fields and
// docs/config.md#5-process-fields).
const (
	DefaultProxyHost          = "127.0.0.1"
	DefaultProxyPort          = 8182
	DefaultHealthPath         = "/ping"
	DefaultHealthTimeoutMs    = 30000
	DefaultDrainTimeoutMs     = 60000
	DefaultForceStopTimeoutMs = 10000
	DefaultHealthIntervalMs   = 250
	DefaultRestartDelayMs     = 1000
	DefaultOutputLines        = 50
	DefaultCheckIntervalMs    = 5000
	DefaultKeep               = 10
	DefaultStopSignal         = "SIGTERM"
)

// StopSignals are the accepted stopSignal names (docs/config.md#54-stopsignal).
var StopSignals = []string{"SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGIOT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGCHLD", "SIGSTKFLT", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPOLL", "SIGPWR", "SIGSYS"}

var (
	policies    = []Policy{PolicyProxied, PolicyCompanion, PolicySingleton, PolicyService}
	octalMode   = regexp.MustCompile(`^[0-7]{1,4}$`)
	emptyObject = value{}
)

// decoder turns the evaluated default export into a Plan, collecting every
// issue in the order of docs/config.md#61-how-issues-are-reported. Invalid
// values are replaced by their defaults so later rules see a best-effort
// config.
type decoder struct {
	issues issueList
}

func isInteger(f float64) bool { return f == math.Trunc(f) && !math.IsInf(f, 0) }

// decodePlan validates and normalizes root, the config's default export.
// absPath is the absolute config path, used for the application default.
func decodePlan(root value, absPath string) (*Plan, []Issue) {
	d := &decoder{}
	p := &Plan{Path: absPath}

	input := root
	if !root.isMapping() {
		d.issues.add("Config must be an object", "Export a default config object with application, proxy, and processes keys.")
		input = emptyObject
	}

	p.Application = nodeBasename(path.Dir(absPath))
	if v := input.get("application"); !v.missing() {
		if s, ok := v.str(); ok {
			p.Application = s
		} else {
			d.mustBeString("application")
		}
	}

	proxy := input.get("proxy")
	switch {
	case proxy.missing():
		d.issues.add("proxy is required", "Add a proxy mapping to the config.")
		proxy = emptyObject
	case !proxy.isMapping():
		d.sectionType("proxy")
		proxy = emptyObject
	}
	control := d.section(input.get("control"), "control")
	procs := input.get("processes")
	if procs.kind() != kindArray {
		d.issues.add("processes must be an array", "Set processes to a list of process definitions.")
	}

	d.proxy(proxy, &p.Proxy)
	d.control(control, p)
	if procs.kind() == kindArray {
		for i, e := range procs.elements() {
			if proc, ok := d.process(e, i, &p.Proxy); ok {
				p.Processes = append(p.Processes, proc)
			}
		}
	}
	if p.Processes == nil {
		p.Processes = []Process{}
	}
	p.LegacyTakeover = d.legacyTakeover(input.get("legacyTakeover"), p.Proxy.ForceStopTimeoutMs)
	d.retention(input.get("releaseRetention"), &p.ReleaseRetention)
	if v := input.get("statePath"); !v.missing() {
		if s, ok := v.str(); ok {
			p.StatePath = s
		} else {
			d.mustBeString("statePath")
		}
	}
	d.crossProcess(p.Processes)
	return p, d.issues.list()
}

// nodeBasename is path.basename of Node: "" for the root directory.
func nodeBasename(dir string) string {
	if dir == "/" {
		return ""
	}
	return path.Base(dir)
}

// --- generic rules (docs/config.md#62-general-messages) ---

func (d *decoder) mustBeString(key string) {
	d.issues.add(key+" must be a string", "Set "+key+" to a string value.")
}

func (d *decoder) required(key string) {
	d.issues.add(key+" is required", "Set "+key+" to a string value.")
}

func (d *decoder) sectionType(key string) {
	d.issues.add(key+" must be an object", "Set "+key+" to a mapping.")
}

// section returns a mapping section, or the empty mapping when the value is
// missing or (with an issue) not a mapping.
func (d *decoder) section(v value, key string) value {
	if v.missing() {
		return emptyObject
	}
	if !v.isMapping() {
		d.sectionType(key)
		return emptyObject
	}
	return v
}

// str reads an optional string with a default (type check only).
func (d *decoder) str(v value, key, def string) string {
	if v.missing() {
		return def
	}
	s, ok := v.str()
	if !ok {
		d.mustBeString(key)
		return def
	}
	return s
}

// optionalStr reads a string that may be unset (null counts as unset; the
// Node.js rollbridge said "is required":
// docs/config.md#10-differences-from-the-nodejs-rollbridge, row 2).
func (d *decoder) optionalStr(v value, key string) *string {
	if v.missing() {
		return nil
	}
	s, ok := v.str()
	if !ok {
		d.mustBeString(key)
		return nil
	}
	return &s
}

// num reads a finite number with a default.
func (d *decoder) num(v value, key string, def float64) float64 {
	if v.missing() {
		return def
	}
	f, ok := v.finite()
	if !ok {
		d.issues.add(key+" must be a number", "Set "+key+" to a finite number.")
		return def
	}
	return f
}

// nonNegative applies the non-negative number rule; fallback is both the
// example in the fix and the value used instead.
func (d *decoder) nonNegative(f float64, key string, fallback float64) float64 {
	if f < 0 {
		d.issues.add(key+" must be a non-negative number", "Set "+key+" to a non-negative number, e.g. "+FormatNumber(fallback)+".")
		return fallback
	}
	return f
}

// --- proxy and control (docs/config.md#42-proxy, docs/config.md#41-control) ---

func (d *decoder) proxy(v value, px *Proxy) {
	px.Host = d.str(v.get("host"), "proxy.host", DefaultProxyHost)
	px.DrainTimeoutMs = Millis(d.num(v.get("drainTimeoutMs"), "proxy.drainTimeoutMs", DefaultDrainTimeoutMs))
	// A negative force-stop timeout is reported here, once, instead of
	// against every process that inherits it as the Node.js rollbridge
	// did (docs/config.md#10-differences-from-the-nodejs-rollbridge, row 1).
	px.ForceStopTimeoutMs = Millis(d.nonNegative(d.num(v.get("forceStopTimeoutMs"), "proxy.forceStopTimeoutMs", DefaultForceStopTimeoutMs), "proxy.forceStopTimeoutMs", DefaultForceStopTimeoutMs))
	px.HealthPath = d.str(v.get("healthPath"), "proxy.healthPath", DefaultHealthPath)
	px.HealthTimeoutMs = Millis(d.num(v.get("healthTimeoutMs"), "proxy.healthTimeoutMs", DefaultHealthTimeoutMs))
	port := d.num(v.get("port"), "proxy.port", DefaultProxyPort)
	if port < 0 || !isInteger(port) || port > 65535 { // a port that can never bind
		d.issues.add("proxy.port must be a port number between 0 and 65535", "Set proxy.port to the stable port nginx points at, e.g. 8182.")
		port = DefaultProxyPort
	}
	px.Port = int(port)
	upstreamDefault := px.Host
	if px.Host == "0.0.0.0" || px.Host == "::" {
		upstreamDefault = "127.0.0.1"
	}
	px.UpstreamHost = d.str(v.get("upstreamHost"), "proxy.upstreamHost", upstreamDefault)
}

func (d *decoder) control(v value, p *Plan) {
	c := &p.Control
	c.Group = d.idOrName(v.get("group"), "control.group")
	if mv := v.get("mode"); !mv.missing() {
		if mode, ok := parseMode(mv); ok {
			c.Mode = &mode
		} else {
			d.issues.add("control.mode must be an octal file mode between 0 and 0o777", `Set control.mode to an octal permission string like "660" (or an octal number such as 0o660).`)
		}
	}
	c.Owner = d.idOrName(v.get("owner"), "control.owner")
	c.Path = d.str(v.get("path"), "control.path", "/tmp/rollbridge-"+p.Application+".sock")
}

func parseMode(v value) (int, bool) {
	if f, ok := v.finite(); ok {
		if isInteger(f) && f >= 0 && f <= 0o777 {
			return int(f), true
		}
		return 0, false
	}
	s, ok := v.str()
	if !ok {
		return 0, false
	}
	s = strings.TrimPrefix(s, "0o")
	if !octalMode.MatchString(s) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, false
	}
	return int(n), true
}

func (d *decoder) idOrName(v value, key string) *IDOrName {
	if v.missing() {
		return nil
	}
	if f, ok := v.finite(); ok && isInteger(f) && f >= 0 {
		return &IDOrName{ID: f}
	}
	if s, ok := v.str(); ok && s != "" {
		return &IDOrName{Name: s}
	}
	d.issues.add(key+" must be a non-negative integer id or a name", "Set "+key+` to a non-negative integer id or a user/group name, e.g. "deploy".`)
	return nil
}

// --- processes (docs/config.md#5-process-fields,
// docs/config.md#each-process-processesi) ---

func (d *decoder) process(v value, i int, px *Proxy) (Process, bool) {
	k := fmt.Sprintf("processes[%d]", i)
	if !v.isMapping() {
		d.issues.add(k+" must be an object", "Define "+k+" as a mapping with id, policy, and command.")
		return Process{}, false
	}
	p := Process{}

	if cv := v.get("command"); cv.missing() {
		d.required(k + ".command")
	} else if s, ok := cv.str(); ok {
		p.Command = s
	} else {
		d.mustBeString(k + ".command")
	}
	p.Cwd = d.optionalStr(v.get("cwd"), k+".cwd")

	p.DeployStrategy = StrategyPersistent
	if dv := v.get("deployStrategy"); !dv.missing() {
		if s, _ := dv.str(); s == string(StrategyPersistent) || s == string(StrategyHandoff) {
			p.DeployStrategy = DeployStrategy(s)
		} else {
			d.issues.add(k+".deployStrategy must be one of: persistent, handoff", "Set "+k+`.deployStrategy to "persistent" or "handoff".`)
		}
	}

	p.Env = d.env(v.get("env"), k)
	p.GracefulStop = d.gracefulStop(v.get("gracefulStopMs"), k, px.ForceStopTimeoutMs)
	p.Health = d.health(v.get("health"), k, px)

	if iv := v.get("id"); iv.missing() {
		d.required(k + ".id")
	} else if s, ok := iv.str(); !ok {
		d.mustBeString(k + ".id")
	} else if s == "" { // empty counts as missing (the Node.js rollbridge accepted it)
		d.required(k + ".id")
	} else {
		p.ID = s
	}

	p.Lifecycle = d.lifecycle(v.get("lifecycle"), k)
	p.Memory = d.memory(v.get("memory"), k)

	if bv := v.get("nonBlockingDrain"); !bv.missing() {
		if b, ok := bv.boolean(); ok {
			p.NonBlockingDrain = b
		} else {
			d.issues.add(k+".nonBlockingDrain must be a boolean", "Set "+k+".nonBlockingDrain to true or false.")
		}
	}

	p.OutputLines = d.positiveInt(v.get("outputLines"), k+".outputLines", DefaultOutputLines,
		"Set "+k+".outputLines to a positive integer number of lines, e.g. 50.")

	p.Policy = PolicyCompanion
	if pv := v.get("policy"); !pv.missing() {
		if s, ok := pv.str(); !ok {
			d.mustBeString(k + ".policy")
		} else if pol := Policy(s); containsPolicy(pol) {
			p.Policy = pol
		} else {
			d.issues.add(k+".policy must be one of: proxied, companion, singleton, service", "Set "+k+".policy to one of: proxied, companion, singleton, service.")
		}
	}

	p.Port = d.port(v.get("port"), k)
	p.Replicas = d.positiveInt(v.get("replicas"), k+".replicas", 1,
		"Set "+k+".replicas to a positive integer number of replicas, e.g. 1 or 4.")
	p.Restart = d.restart(v.get("restart"), k)
	p.RestartDelayMs = Millis(d.num(v.get("restartDelayMs"), k+".restartDelayMs", DefaultRestartDelayMs))

	p.StopSignal = DefaultStopSignal
	if sv := v.get("stopSignal"); !sv.missing() {
		if s, ok := sv.str(); ok && isStopSignal(s) {
			p.StopSignal = s
		} else {
			d.issues.add(k+".stopSignal must be a valid signal name", "Set "+k+`.stopSignal to a signal name such as "SIGTERM", "SIGINT", or "SIGQUIT".`)
		}
	}
	return p, true
}

func containsPolicy(p Policy) bool {
	for _, q := range policies {
		if p == q {
			return true
		}
	}
	return false
}

func isStopSignal(s string) bool {
	for _, n := range StopSignals {
		if s == n {
			return true
		}
	}
	return false
}

// positiveInt reads a number that must be an integer >= 1.
func (d *decoder) positiveInt(v value, key string, def float64, fix string) int {
	f := d.num(v, key, def)
	if !isInteger(f) || f < 1 {
		d.issues.add(key+" must be a positive integer", fix)
		f = def
	}
	return clampInt(f)
}

// maxSafeInteger is Number.MAX_SAFE_INTEGER: integer settings beyond it
// are clamped, since JavaScript itself no longer counts exactly there.
const maxSafeInteger = 1<<53 - 1

func clampInt(f float64) int { return int(math.Min(f, maxSafeInteger)) }

func (d *decoder) env(v value, k string) []EnvVar {
	out := []EnvVar{}
	if v.missing() {
		return out
	}
	if !v.isMapping() {
		d.issues.add(k+".env must be an object", "Set "+k+".env to a mapping of string environment values.")
		return out
	}
	for _, name := range v.ownKeys() {
		key := k + ".env." + name
		ev := v.get(name)
		if ev.missing() {
			d.required(key)
			continue
		}
		s, ok := ev.str()
		if !ok {
			d.mustBeString(key)
			continue
		}
		out = append(out, EnvVar{Name: name, Value: s})
	}
	return out
}

func (d *decoder) gracefulStop(v value, k string, forceStop Millis) GracefulStop {
	if v.missing() {
		return GracefulStop{Ms: forceStop}
	}
	if s, ok := v.str(); ok && s == "indefinite" {
		return GracefulStop{Indefinite: true}
	}
	f := d.num(v, k+".gracefulStopMs", float64(forceStop))
	return GracefulStop{Ms: Millis(d.nonNegative(f, k+".gracefulStopMs", float64(forceStop)))}
}

func (d *decoder) health(v value, k string, px *Proxy) *Health {
	switch v.kind() {
	case kindNull:
		return nil
	case kindBool:
		if b, _ := v.boolean(); !b {
			return nil
		}
		d.healthNotObject(k)
		v = emptyObject
	case kindMissing, kindObject:
	default:
		d.healthNotObject(k)
		v = emptyObject
	}
	h := &Health{}
	h.IntervalMs = Millis(d.num(v.get("intervalMs"), k+".health.intervalMs", DefaultHealthIntervalMs))
	h.Path = d.str(v.get("path"), k+".health.path", px.HealthPath)
	sd := d.num(v.get("startDelayMs"), k+".health.startDelayMs", 0)
	if sd < 0 {
		d.issues.add(k+".health.startDelayMs must be a non-negative number", "Set "+k+".health.startDelayMs to a non-negative number of milliseconds, e.g. 0 or 2000.")
		sd = 0
	}
	h.StartDelayMs = Millis(sd)
	h.TimeoutMs = Millis(d.num(v.get("timeoutMs"), k+".health.timeoutMs", float64(px.HealthTimeoutMs)))
	return h
}

func (d *decoder) healthNotObject(k string) {
	d.issues.add(k+".health must be an object", "Set "+k+".health to a mapping with path, timeoutMs, and intervalMs, or false to disable.")
}

func (d *decoder) lifecycle(v value, k string) Lifecycle {
	if !v.missing() && !v.isMapping() {
		d.issues.add(k+".lifecycle must be an object", "Set "+k+".lifecycle to a mapping with optional quietCommand, drainCommand, stopCommand, and drainTimeoutMs.")
		v = emptyObject
	}
	key := k + ".lifecycle"
	lc := Lifecycle{}
	lc.DrainTimeoutMs = Millis(d.nonNegative(d.num(v.get("drainTimeoutMs"), key+".drainTimeoutMs", 0), key+".drainTimeoutMs", 0))
	lc.QuietCommand = d.optionalStr(v.get("quietCommand"), key+".quietCommand")
	lc.DrainCommand = d.optionalStr(v.get("drainCommand"), key+".drainCommand")
	lc.StopCommand = d.optionalStr(v.get("stopCommand"), key+".stopCommand")
	if lc.DrainCommand != nil && lc.DrainTimeoutMs <= 0 {
		d.issues.add(key+".drainCommand requires a positive "+key+".drainTimeoutMs",
			"Set "+key+".drainTimeoutMs to a positive number to bound "+key+".drainCommand; with 0 the drain step is skipped and the command never runs.")
	}
	return lc
}

func (d *decoder) memory(v value, k string) *Memory {
	if v.missing() {
		return nil
	}
	if !v.isMapping() {
		d.issues.add(k+".memory must be an object", "Set "+k+".memory to a mapping with limitBytes (and optionally warnBytes, checkIntervalMs), or omit it to disable memory supervision.")
		return nil
	}
	key := k + ".memory"
	m := &Memory{}
	m.LimitBytes = d.num(v.get("limitBytes"), key+".limitBytes", 0)
	m.WarnBytes = d.num(v.get("warnBytes"), key+".warnBytes", 0)
	m.CheckIntervalMs = Millis(d.num(v.get("checkIntervalMs"), key+".checkIntervalMs", DefaultCheckIntervalMs))
	if !isInteger(m.LimitBytes) || m.LimitBytes <= 0 {
		d.issues.add(key+".limitBytes must be a positive integer", "Set "+key+".limitBytes to a positive integer number of bytes, e.g. 536870912 (512 MiB).")
	}
	if !isInteger(m.WarnBytes) || m.WarnBytes < 0 {
		d.issues.add(key+".warnBytes must be a non-negative integer", "Set "+key+".warnBytes to a non-negative integer number of bytes below limitBytes, e.g. 402653184 (384 MiB).")
		m.WarnBytes = 0
	}
	if m.CheckIntervalMs <= 0 {
		d.issues.add(key+".checkIntervalMs must be a positive number", "Set "+key+".checkIntervalMs to a positive number of milliseconds, e.g. 5000.")
		m.CheckIntervalMs = DefaultCheckIntervalMs
	}
	return m
}

func (d *decoder) port(v value, k string) *PortRange {
	const msg = " must be a positive port or valid {from, to} range"
	switch v.kind() {
	case kindMissing, kindNull:
		return nil
	case kindNumber:
		f := v.v.ToFloat()
		// A fixed port must also be an integer <= 65535: one that can never
		// bind fails validation, not the deploy.
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || !isInteger(f) || f > 65535 {
			d.issues.add(k+".port"+msg, "Set "+k+".port to a positive port number or a {from, to} range.")
			return nil
		}
		return &PortRange{From: int(f), To: f}
	case kindObject:
		from := d.num(v.get("from"), k+".port.from", 0)
		to := d.num(v.get("to"), k+".port.to", from)
		// from must be an integer port; to may be fractional or above 65535
		// (allocation stops at 65535), as the Node.js rollbridge deploys it.
		if from < 0 || to < 0 || to < from || !isInteger(from) || from > 65535 {
			d.issues.add(k+".port"+msg, "Set "+k+".port.from and "+k+".port.to to a positive ascending range, e.g. {from: 18000, to: 18099}.")
			return nil
		}
		return &PortRange{From: int(from), To: to}
	default:
		d.issues.add(k+".port"+msg, "Set "+k+".port to a port number or {from, to} range.")
		return nil
	}
}

func (d *decoder) restart(v value, k string) Restart {
	if !v.missing() && !v.isMapping() {
		d.issues.add(k+".restart must be an object", "Set "+k+".restart to a mapping with maxRestarts, windowMs, backoffFactor, and maxDelayMs.")
		v = emptyObject
	}
	key := k + ".restart"
	r := Restart{}
	window := d.num(v.get("windowMs"), key+".windowMs", 0)
	maxDelay := d.num(v.get("maxDelayMs"), key+".maxDelayMs", 0)
	r.BackoffFactor = d.num(v.get("backoffFactor"), key+".backoffFactor", 1)
	if r.BackoffFactor < 1 {
		d.issues.add(key+".backoffFactor must be a number greater than or equal to 1", "Set "+key+".backoffFactor to a number >= 1 (1 keeps a constant delay; 2 doubles the delay each restart).")
		r.BackoffFactor = 1
	}
	r.MaxDelayMs = Millis(d.nonNegative(maxDelay, key+".maxDelayMs", 0))
	if mv := v.get("maxRestarts"); !mv.missing() {
		if f, ok := mv.finite(); ok && isInteger(f) && f >= 0 {
			n := clampInt(f)
			r.MaxRestarts = &n
		} else {
			d.issues.add(key+".maxRestarts must be a non-negative integer", "Set "+key+".maxRestarts to a non-negative integer (0 disables automatic restarts), or omit it for unlimited restarts.")
		}
	}
	r.WindowMs = Millis(d.nonNegative(window, key+".windowMs", 0))
	return r
}

// --- legacyTakeover, releaseRetention (docs/config.md#45-legacytakeover,
// docs/config.md#43-releaseretention) ---

func (d *decoder) legacyTakeover(v value, forceStop Millis) *LegacyTakeover {
	if v.missing() {
		return nil
	}
	if !v.isMapping() {
		d.issues.add("legacyTakeover must be an object", "Set legacyTakeover to a mapping with screens and/or processes.")
		return nil
	}
	lt := &LegacyTakeover{Screens: []string{}, Processes: []LegacyProcess{}}
	fst := d.num(v.get("forceStopTimeoutMs"), "legacyTakeover.forceStopTimeoutMs", float64(forceStop))

	if sv := v.get("screens"); !sv.missing() {
		if sv.kind() != kindArray {
			d.issues.add("legacyTakeover.screens must be an array", "Set legacyTakeover.screens to a list of strings.")
		} else {
			lt.Screens = d.nonEmptyStrings(sv, "legacyTakeover.screens")
		}
	}
	if pv := v.get("processes"); !pv.missing() {
		if pv.kind() != kindArray {
			d.issues.add("legacyTakeover.processes must be an array", "Set legacyTakeover.processes to a list of mappings with includes strings.")
		} else {
			for j, e := range pv.elements() {
				key := fmt.Sprintf("legacyTakeover.processes[%d]", j)
				if !e.isMapping() {
					d.issues.add(key+" must be an object", "Set "+key+" to a mapping with includes strings.")
					continue
				}
				lp := LegacyProcess{Includes: []string{}}
				if iv := e.get("includes"); !iv.missing() {
					if iv.kind() != kindArray {
						d.issues.add(key+".includes must be an array", "Set "+key+".includes to a list of strings.")
					} else {
						lp.Includes = d.nonEmptyStrings(iv, key+".includes")
					}
				}
				if len(lp.Includes) == 0 {
					d.issues.add(key+".includes must contain at least one matcher", "Set "+key+".includes to one or more command-line substrings that identify the legacy process.")
				}
				lp.Name = d.str(e.get("name"), key+".name", fmt.Sprintf("legacy process %d", j+1))
				lt.Processes = append(lt.Processes, lp)
			}
		}
	}
	if len(lt.Screens) == 0 && len(lt.Processes) == 0 {
		d.issues.add("legacyTakeover must define at least one screen or process matcher", "Set legacyTakeover.screens or legacyTakeover.processes so predeploy-cleanup knows what legacy processes it may stop.")
	}
	lt.ForceStopTimeoutMs = Millis(d.nonNegative(fst, "legacyTakeover.forceStopTimeoutMs", float64(forceStop)))
	return lt
}

func (d *decoder) nonEmptyStrings(v value, key string) []string {
	out := []string{}
	for m, e := range v.elements() {
		if s, ok := e.str(); ok && s != "" {
			out = append(out, s)
			continue
		}
		k := fmt.Sprintf("%s[%d]", key, m)
		d.issues.add(k+" must be a non-empty string", "Set "+k+" to a non-empty string.")
	}
	return out
}

func (d *decoder) retention(v value, r *ReleaseRetention) {
	v = d.section(v, "releaseRetention")
	keep := d.num(v.get("keep"), "releaseRetention.keep", DefaultKeep)
	maxAge := d.num(v.get("maxAgeMs"), "releaseRetention.maxAgeMs", 0)
	if keep < 0 || !isInteger(keep) {
		d.issues.add("releaseRetention.keep must be a non-negative integer", "Set releaseRetention.keep to a non-negative integer, e.g. 10.")
		keep = DefaultKeep
	}
	r.Keep = clampInt(keep)
	r.MaxAgeMs = Millis(d.nonNegative(maxAge, "releaseRetention.maxAgeMs", 0))
}

// --- cross-process rules (docs/config.md#64-rules-across-processes) ---

func (d *decoder) crossProcess(procs []Process) {
	seen := map[string]bool{}
	for _, p := range procs {
		id := p.ID
		if id == "" {
			continue
		}
		if seen[id] {
			d.issues.add("Duplicate process id: "+id, `Give each process a unique id; "`+id+`" is used more than once.`)
		}
		seen[id] = true
		if strings.Contains(id, "#") {
			d.issues.add(`Process id "`+id+`" must not contain "#"`,
				`Remove "#" from the process id "`+id+`"; it is reserved for replica instance ids (e.g. "`+strings.ReplaceAll(id, "#", "")+`#0").`)
		}
		if p.Replicas > 1 && (p.Policy != PolicyCompanion || p.Port != nil) {
			what := string(p.Policy)
			if p.Port != nil {
				what += " with a port"
			}
			d.issues.add(`Process "`+id+`" can only set replicas > 1 on a companion process without a port`,
				fmt.Sprintf(`Run replicas (%d) only on a companion process without a port; "%s" is %s.`, p.Replicas, id, what))
		}
		if p.NonBlockingDrain && p.Policy != PolicyCompanion {
			d.issues.add(`Process "`+id+`" can only set nonBlockingDrain on a companion process`,
				`Set nonBlockingDrain only on a companion process; "`+id+`" is `+string(p.Policy)+`.`)
		}
		if p.DeployStrategy == StrategyHandoff {
			switch {
			case p.Policy != PolicyService:
				d.issues.add(`Process "`+id+`" can only set deployStrategy: "handoff" on a service process`,
					`Set deployStrategy: "handoff" only on service processes; "`+id+`" is `+string(p.Policy)+`.`)
			case p.Port == nil:
				d.issues.add(`Handoff service "`+id+`" must define a port range`,
					`Add a port range to hand off service "`+id+`" so old and new instances can overlap.`)
			case float64(p.Port.From) == p.Port.To:
				d.issues.add(`Handoff service "`+id+`" must use a multi-port range`,
					fmt.Sprintf(`Set service "%s" to a multi-port range, e.g. port: {from: %d, to: %d}.`, id, p.Port.From, p.Port.From+99))
			}
		}
		if p.Lifecycle.StopCommand != nil && *p.Lifecycle.StopCommand != "" && p.StopSignal != DefaultStopSignal {
			d.issues.add(`Process "`+id+`" sets both lifecycle.stopCommand and a custom stopSignal, but stopCommand replaces stopSignal`,
				`Drop the custom stopSignal "`+p.StopSignal+`" or lifecycle.stopCommand from "`+id+`": with a stopCommand set, Rollbridge runs it to stop the process instead of sending stopSignal, so the signal is never used.`)
		}
	}
	proxied := 0
	for _, p := range procs {
		if p.Policy == PolicyProxied {
			proxied++
		}
	}
	if proxied != 1 {
		d.issues.add(fmt.Sprintf("Config must define exactly one proxied process; found %d", proxied),
			"Mark exactly one process with policy: proxied so Rollbridge knows where to forward traffic.")
	}
	for _, p := range procs {
		if p.Policy != PolicyProxied || p.Port != nil {
			continue
		}
		name := p.ID
		if name == "" {
			name = "(unnamed)"
		}
		d.issues.add("Proxied process "+name+" must define a port range",
			`Add a port range to the proxied process "`+name+`", e.g. port: {from: 18000, to: 18099}.`)
	}
}
