package jsconfig

import (
	"math"
	"time"
)

// Plan is the normalized, defaulted and validated configuration. It is built
// once per load and never modified afterwards: code that needs a different
// plan loads the file again. No field holds a JavaScript value.
type Plan struct {
	// Path is the absolute path the plan was loaded from.
	Path             string
	Application      string
	Control          Control
	LegacyTakeover   *LegacyTakeover // nil when unset
	Processes        []Process
	Proxy            Proxy
	ReleaseRetention ReleaseRetention
	StatePath        string // "" when unset (no persistence)
}

// Control holds the control-socket settings.
type Control struct {
	Path  string
	Mode  *int      // chmod mode applied after binding; nil leaves the umask's
	Owner *IDOrName // chown owner; nil leaves it unchanged
	Group *IDOrName // chown group; nil leaves it unchanged
}

// IDOrName is a user or group given either as a numeric id or as a name.
// Names are resolved when the daemon binds the socket, not at validation.
type IDOrName struct {
	Name string  // set when given as a string
	ID   float64 // set when given as a number (a non-negative integer)
}

// IsName reports whether the value was given as a string.
func (v IDOrName) IsName() bool { return v.Name != "" }

// Proxy holds the stable proxy listener settings and shared defaults.
type Proxy struct {
	Host               string
	Port               int
	UpstreamHost       string
	HealthPath         string
	HealthTimeoutMs    Millis
	DrainTimeoutMs     Millis
	ForceStopTimeoutMs Millis
}

// ReleaseRetention bounds how many stopped releases the daemon remembers.
type ReleaseRetention struct {
	Keep     int
	MaxAgeMs Millis // 0 disables age-based pruning
}

// LegacyTakeover lists pre-rollbridge supervisors predeploy-cleanup may stop.
type LegacyTakeover struct {
	ForceStopTimeoutMs Millis
	Processes          []LegacyProcess
	Screens            []string
}

// LegacyProcess matches a legacy process by substrings of its command line.
type LegacyProcess struct {
	Includes []string
	Name     string
}

// Policy is a process lifecycle policy.
type Policy string

// The four process policies.
const (
	PolicyProxied   Policy = "proxied"
	PolicyCompanion Policy = "companion"
	PolicySingleton Policy = "singleton"
	PolicyService   Policy = "service"
)

// DeployStrategy says how a service behaves across deploys.
type DeployStrategy string

// The service deploy strategies.
const (
	StrategyPersistent DeployStrategy = "persistent"
	StrategyHandoff    DeployStrategy = "handoff"
)

// Process is one managed process definition. Command, Cwd and Env values
// are templates, rendered per release by the engine.
type Process struct {
	ID               string
	Policy           Policy
	DeployStrategy   DeployStrategy
	Command          string
	Cwd              *string // nil when unset; "" also means the release path
	Env              []EnvVar
	Port             *PortRange // nil when the process has no port
	Health           *Health    // nil when disabled
	StopSignal       string
	GracefulStop     GracefulStop
	RestartDelayMs   Millis
	Restart          Restart
	Memory           *Memory // nil when memory is not supervised
	Lifecycle        Lifecycle
	Replicas         int
	NonBlockingDrain bool
	OutputLines      int
}

// EnvVar is one entry of a process's env, in the config's key order.
type EnvVar struct {
	Name  string
	Value string
}

// PortRange is a fixed port (From == To) or a range scanned upwards.
// From is a port number; To may be fractional or above 65535, in which case
// allocation stops at the last integer port not above 65535.
type PortRange struct {
	From int
	To   float64
}

// Last returns the highest port the range can allocate.
func (r PortRange) Last() int {
	return int(math.Min(math.Floor(r.To), 65535))
}

// Health is the HTTP readiness check of a proxied process.
type Health struct {
	Path         string
	TimeoutMs    Millis
	IntervalMs   Millis
	StartDelayMs Millis
}

// GracefulStop is the time between the stop signal and SIGKILL.
type GracefulStop struct {
	Indefinite bool   // never send SIGKILL
	Ms         Millis // used when not Indefinite
}

// Restart is the automatic restart policy after a crash.
type Restart struct {
	MaxRestarts   *int // nil means unlimited
	WindowMs      Millis
	BackoffFactor float64
	MaxDelayMs    Millis
}

// Memory is the RSS supervision of a process group.
type Memory struct {
	LimitBytes      float64
	WarnBytes       float64
	CheckIntervalMs Millis
}

// Lifecycle holds the hooks of the graceful stop sequence. A nil command is
// unset; hooks are not templated.
type Lifecycle struct {
	DrainTimeoutMs Millis
	QuietCommand   *string
	DrainCommand   *string
	StopCommand    *string
}

// Millis is a duration in milliseconds as written in the config. It may be
// fractional and, for the fields the reference never sign-checks, negative.
type Millis float64

// Duration converts to a time.Duration; negative values become 0.
func (m Millis) Duration() time.Duration {
	if m <= 0 {
		return 0
	}
	return time.Duration(float64(m) * float64(time.Millisecond))
}

// ProxiedProcess returns the one proxied process of a valid plan.
func (p *Plan) ProxiedProcess() *Process {
	for i := range p.Processes {
		if p.Processes[i].Policy == PolicyProxied {
			return &p.Processes[i]
		}
	}
	return nil
}

// Process returns the process with the given config id, or nil.
func (p *Plan) Process(id string) *Process {
	for i := range p.Processes {
		if p.Processes[i].ID == id {
			return &p.Processes[i]
		}
	}
	return nil
}
