package engine

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"golang.org/x/sys/unix"
)

// Check is one line of doctor's report (docs/cli.md#doctor).
type Check struct {
	Name   string
	OK     bool
	Detail string
	// Warning marks a passing check that still wants attention; it never
	// fails doctor.
	Warning bool
}

// MarshalJSON writes {detail, name, ok}, plus "warning": true on a
// warning only, so the checks that existed before warnings keep their shape.
func (c Check) MarshalJSON() ([]byte, error) {
	o := jsconfig.Object{{Key: "detail", Value: c.Detail}, {Key: "name", Value: c.Name}, {Key: "ok", Value: c.OK}}
	if c.Warning {
		o = append(o, jsconfig.Field{Key: "warning", Value: true})
	}
	return o.MarshalJSON()
}

// DoctorRelease is the prepared release doctor checks, when given.
type DoctorRelease struct {
	Path      string // as given; made absolute against the working directory
	ID        string // "" for the default
	IDSet     bool
	Revision  string
	RevSet    bool
	LookupEnv func(string) (string, bool) // the doctor's environment
}

// Doctor runs every check after "config" (docs/cli.md#doctor) for a valid
// config. Every probe is time-limited, so doctor cannot hang.
func Doctor(plan *jsconfig.Plan, release *DoctorRelease) []Check {
	var checks []Check
	add := func(name string, ok bool, format string, args ...any) {
		checks = append(checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	path := plan.Control.Path
	endpoint := ControlEndpoint(plan.Control)
	probe, probeErr := control.Probe(endpoint)
	var untrusted *control.OwnerError
	switch {
	case errors.As(probeErr, &untrusted):
		add("control socket", false, "%s", probeErr.Error())
	case probeErr != nil:
		add("control socket", false, "could not probe %s: %s", path, probeErr.Error())
	case !probe.Alive && notASocket(path) != nil:
		add("control socket", false, "%s exists and is not a socket; the daemon would refuse to start", path)
	case !probe.Alive:
		add("control socket", true, "no daemon running; %s is free to bind", path)
	case !probe.Rollbridge:
		add("control socket", false, "another process is already listening on %s; the daemon would fail to bind it", path)
	case probe.Application == plan.Application:
		add("control socket", true, "Rollbridge daemon for %q is running on %s", probe.Application, path)
	default:
		add("control socket", false, "a Rollbridge daemon for %q is already running on %s; stop it before starting another", probe.Application, path)
	}

	dir := parentDir(path)
	if writableDir(dir) {
		add("control socket directory", true, "%s is writable", dir)
	} else {
		add("control socket directory", false, "%s is missing or not writable", dir)
	}

	hostPort := plan.Proxy.Host + ":" + strconv.Itoa(plan.Proxy.Port)
	code := bindCode(plan.Proxy.Host, plan.Proxy.Port)
	switch {
	case code == "":
		add("proxy port", true, "%s is available", hostPort)
	case probeErr == nil && probe.Rollbridge && probe.Application == plan.Application && probe.HasProxy &&
		probe.ProxyHost == plan.Proxy.Host && probe.ProxyPort == float64(plan.Proxy.Port):
		add("proxy port", true, "%s is already held by the running Rollbridge daemon", hostPort)
	default:
		add("proxy port", false, "%s is unavailable (%s)", hostPort, code)
	}
	checks = append(checks, fileLimitCheck(endpoint, probeErr == nil && probe.Rollbridge))

	if plan.StatePath != "" {
		dir := parentDir(plan.StatePath)
		if writableDir(dir) {
			add("state path directory", true, "%s is writable", dir)
		} else {
			add("state path directory", false, "%s is missing or not writable; state cannot be persisted", dir)
		}
		var live []Orphan
		var untrusted error
		if probeErr != nil || !probe.Alive {
			list, _, err := ReadState(plan.StatePath)
			live, untrusted = LiveOrphans(list), err
		}
		switch {
		case probeErr == nil && probe.Alive:
			add("orphaned processes", true, "a daemon is running; its managed processes are not orphans")
		case untrusted != nil:
			add("orphaned processes", false, "%s", untrusted.Error())
		case len(live) == 0:
			add("orphaned processes", true, "no leftover processes from a previous daemon")
		default:
			names := make([]string, len(live))
			for i, o := range live {
				names[i] = fmt.Sprintf("%s (pid %d)", o.ID, o.Pid)
			}
			add("orphaned processes", false, "%d possible orphaned %s still running: %s — verify and stop any leftovers",
				len(live), plural(len(live), "process", "processes"), strings.Join(names, ", "))
		}
	}

	// Both only appear when they have something to say, so a healthy
	// host's report is unchanged.
	if probeErr == nil && probe.Alive && probe.Rollbridge && probe.Application == plan.Application {
		if c := reloadCheck(endpoint, plan.Path); c != nil {
			checks = append(checks, *c)
		}
	}
	if c := ephemeralPortsCheck(plan, ephemeralRangeFile, reservedPortsFile); c != nil {
		checks = append(checks, *c)
	}

	if release != nil {
		checks = append(checks, releaseChecks(plan, release)...)
	}
	return checks
}

// releaseChecks are checks 7–9: the release directory, every process's
// templates, and the working directories they name.
func releaseChecks(plan *jsconfig.Plan, rel *DoctorRelease) []Check {
	abs, err := filepath.Abs(rel.Path)
	if err != nil {
		abs = rel.Path
	}
	var checks []Check
	if st, err := os.Stat(abs); err == nil && st.IsDir() {
		checks = append(checks, Check{Name: "release path", OK: true, Detail: abs + " exists"})
	} else {
		checks = append(checks, Check{Name: "release path", OK: false, Detail: abs + " is missing or not a directory"})
	}
	id := rel.ID
	if !rel.IDSet || id == "" {
		id = rel.Revision
		if !rel.RevSet || id == "" {
			id = filepath.Base(abs)
		}
	}
	revision := rel.Revision
	if !rel.RevSet || revision == "" {
		revision = id
	}
	var ports []PortAssignment
	for _, p := range plan.Processes {
		if p.Port != nil {
			ports = append(ports, PortAssignment{ID: p.ID, Port: p.Port.From})
		}
	}
	var failures, missing []string
	checked := 0
	for i := range plan.Processes {
		p := &plan.Processes[i]
		ctx := &TemplateContext{
			Application: plan.Application, ReleaseID: id, ReleasePath: abs, Revision: revision,
			ProcessID: p.ID, ReplicaIndex: 0, ReplicaCount: p.Replicas, Ports: ports, Proxy: plan.Proxy,
			LookupEnv: rel.LookupEnv,
		}
		if p.Port != nil {
			port := p.Port.From
			ctx.Port = &port
		}
		rendered, err := RenderProcess(p, ctx, nil)
		if err != nil {
			failures = append(failures, p.ID+": "+err.Error())
			continue
		}
		checked++
		if st, err := os.Stat(rendered.Dir); err != nil || !st.IsDir() {
			missing = append(missing, fmt.Sprintf("%s (%s)", p.ID, rendered.Dir))
		}
	}
	if len(failures) == 0 {
		checks = append(checks, Check{Name: "process templates", OK: true, Detail: fmt.Sprintf("all %d process command/cwd/env templates resolve", len(plan.Processes))})
	} else {
		checks = append(checks, Check{Name: "process templates", OK: false, Detail: "unresolved templates — " + strings.Join(failures, "; ")})
	}
	switch {
	case len(missing) == 0 && checked == 1:
		checks = append(checks, Check{Name: "process working directories", OK: true, Detail: "all 1 process working directory exists"})
	case len(missing) == 0:
		checks = append(checks, Check{Name: "process working directories", OK: true, Detail: fmt.Sprintf("all %d process working directories exist", checked)})
	case len(missing) == 1:
		checks = append(checks, Check{Name: "process working directories", OK: false, Detail: "missing working directory: " + missing[0]})
	default:
		checks = append(checks, Check{Name: "process working directories", OK: false, Detail: "missing working directories: " + strings.Join(missing, ", ")})
	}
	return checks
}

// parentDir is the directory of path made absolute.
func parentDir(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return filepath.Dir(abs)
}

// writableDir is access(dir, W_OK|X_OK) with the real uid, as access(2).
func writableDir(dir string) bool {
	return unix.Access(dir, unix.W_OK|unix.X_OK) == nil
}

// bindCode tries to listen on host:port and says why it could not: an
// errno name, ENOTFOUND for a host that does not resolve, EUNKNOWN
// otherwise. "" means the port is available.
func bindCode(host string, port int) string {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err == nil {
		ln.Close()
		return ""
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "ENOTFOUND"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return "EUNKNOWN"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
