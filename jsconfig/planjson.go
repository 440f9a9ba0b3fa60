package jsconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// UnmarshalPlan rebuilds a Plan from its normalized JSON (MarshalJSON's
// output) and the config's absolute path. It lets a process that must not
// run JavaScript itself (the daemon) take a plan loaded by another.
func UnmarshalPlan(data []byte, path string) (*Plan, error) {
	var raw struct {
		Application    string          `json:"application"`
		Control        json.RawMessage `json:"control"`
		LegacyTakeover *struct {
			ForceStopTimeoutMs float64 `json:"forceStopTimeoutMs"`
			Processes          []struct {
				Includes []string `json:"includes"`
				Name     string   `json:"name"`
			} `json:"processes"`
			Screens []string `json:"screens"`
		} `json:"legacyTakeover"`
		Processes []json.RawMessage `json:"processes"`
		ProxyRaw  struct {
			DrainTimeoutMs     float64 `json:"drainTimeoutMs"`
			ForceStopTimeoutMs float64 `json:"forceStopTimeoutMs"`
			HealthPath         string  `json:"healthPath"`
			HealthTimeoutMs    float64 `json:"healthTimeoutMs"`
			Host               string  `json:"host"`
			Port               int     `json:"port"`
			UpstreamHost       string  `json:"upstreamHost"`
		} `json:"proxy"`
		ReleaseRetention struct {
			Keep     int     `json:"keep"`
			MaxAgeMs float64 `json:"maxAgeMs"`
		} `json:"releaseRetention"`
		StatePath string `json:"statePath"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("reading the loaded config: %w", err)
	}
	p := &Plan{Path: path, Application: raw.Application, StatePath: raw.StatePath, Processes: []Process{}}
	px := raw.ProxyRaw
	p.Proxy = Proxy{Host: px.Host, Port: px.Port, UpstreamHost: px.UpstreamHost, HealthPath: px.HealthPath,
		HealthTimeoutMs: Millis(px.HealthTimeoutMs), DrainTimeoutMs: Millis(px.DrainTimeoutMs), ForceStopTimeoutMs: Millis(px.ForceStopTimeoutMs)}
	p.ReleaseRetention = ReleaseRetention{Keep: raw.ReleaseRetention.Keep, MaxAgeMs: Millis(raw.ReleaseRetention.MaxAgeMs)}
	if err := unmarshalControl(raw.Control, &p.Control); err != nil {
		return nil, err
	}
	if lt := raw.LegacyTakeover; lt != nil {
		p.LegacyTakeover = &LegacyTakeover{ForceStopTimeoutMs: Millis(lt.ForceStopTimeoutMs), Screens: lt.Screens, Processes: []LegacyProcess{}}
		for _, lp := range lt.Processes {
			p.LegacyTakeover.Processes = append(p.LegacyTakeover.Processes, LegacyProcess{Includes: lp.Includes, Name: lp.Name})
		}
	}
	for _, rp := range raw.Processes {
		proc, err := unmarshalProcess(rp)
		if err != nil {
			return nil, err
		}
		p.Processes = append(p.Processes, proc)
	}
	return p, nil
}

func unmarshalControl(data []byte, c *Control) error {
	var raw struct {
		Group json.RawMessage `json:"group"`
		Mode  *int            `json:"mode"`
		Owner json.RawMessage `json:"owner"`
		Path  string          `json:"path"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("reading the loaded config's control: %w", err)
	}
	c.Path, c.Mode = raw.Path, raw.Mode
	c.Owner, c.Group = idOrName(raw.Owner), idOrName(raw.Group)
	return nil
}

func idOrName(data json.RawMessage) *IDOrName {
	if len(data) == 0 {
		return nil
	}
	var name string
	if json.Unmarshal(data, &name) == nil {
		return &IDOrName{Name: name}
	}
	var id float64
	if json.Unmarshal(data, &id) == nil {
		return &IDOrName{ID: id}
	}
	return nil
}

func unmarshalProcess(data []byte) (Process, error) {
	var raw struct {
		Command        string          `json:"command"`
		Cwd            *string         `json:"cwd"`
		DeployStrategy string          `json:"deployStrategy"`
		Env            json.RawMessage `json:"env"`
		GracefulStopMs json.RawMessage `json:"gracefulStopMs"`
		Health         *struct {
			IntervalMs   float64 `json:"intervalMs"`
			Path         string  `json:"path"`
			StartDelayMs float64 `json:"startDelayMs"`
			TimeoutMs    float64 `json:"timeoutMs"`
		} `json:"health"`
		ID        string `json:"id"`
		Lifecycle struct {
			DrainTimeoutMs float64 `json:"drainTimeoutMs"`
			QuietCommand   *string `json:"quietCommand"`
			DrainCommand   *string `json:"drainCommand"`
			StopCommand    *string `json:"stopCommand"`
		} `json:"lifecycle"`
		Memory *struct {
			CheckIntervalMs float64 `json:"checkIntervalMs"`
			LimitBytes      float64 `json:"limitBytes"`
			WarnBytes       float64 `json:"warnBytes"`
		} `json:"memory"`
		NonBlockingDrain bool   `json:"nonBlockingDrain"`
		OutputLines      int    `json:"outputLines"`
		Policy           string `json:"policy"`
		Port             *struct {
			From int     `json:"from"`
			To   float64 `json:"to"`
		} `json:"port"`
		Replicas int `json:"replicas"`
		Restart  struct {
			BackoffFactor float64 `json:"backoffFactor"`
			MaxDelayMs    float64 `json:"maxDelayMs"`
			MaxRestarts   *int    `json:"maxRestarts"`
			WindowMs      float64 `json:"windowMs"`
		} `json:"restart"`
		RestartDelayMs float64 `json:"restartDelayMs"`
		StopSignal     string  `json:"stopSignal"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Process{}, fmt.Errorf("reading a loaded process: %w", err)
	}
	p := Process{
		ID: raw.ID, Policy: Policy(raw.Policy), DeployStrategy: DeployStrategy(raw.DeployStrategy), Command: raw.Command, Cwd: raw.Cwd,
		StopSignal: raw.StopSignal, RestartDelayMs: Millis(raw.RestartDelayMs), Replicas: raw.Replicas,
		NonBlockingDrain: raw.NonBlockingDrain, OutputLines: raw.OutputLines,
		Restart: Restart{MaxRestarts: raw.Restart.MaxRestarts, WindowMs: Millis(raw.Restart.WindowMs), BackoffFactor: raw.Restart.BackoffFactor, MaxDelayMs: Millis(raw.Restart.MaxDelayMs)},
		Lifecycle: Lifecycle{DrainTimeoutMs: Millis(raw.Lifecycle.DrainTimeoutMs), QuietCommand: raw.Lifecycle.QuietCommand,
			DrainCommand: raw.Lifecycle.DrainCommand, StopCommand: raw.Lifecycle.StopCommand},
	}
	if bytes.Equal(raw.GracefulStopMs, []byte(`"indefinite"`)) {
		p.GracefulStop.Indefinite = true
	} else if err := json.Unmarshal(raw.GracefulStopMs, (*float64)(&p.GracefulStop.Ms)); err != nil {
		return Process{}, fmt.Errorf("reading a loaded process's gracefulStopMs: %w", err)
	}
	if h := raw.Health; h != nil {
		p.Health = &Health{Path: h.Path, TimeoutMs: Millis(h.TimeoutMs), IntervalMs: Millis(h.IntervalMs), StartDelayMs: Millis(h.StartDelayMs)}
	}
	if m := raw.Memory; m != nil {
		p.Memory = &Memory{LimitBytes: m.LimitBytes, WarnBytes: m.WarnBytes, CheckIntervalMs: Millis(m.CheckIntervalMs)}
	}
	if raw.Port != nil {
		p.Port = &PortRange{From: raw.Port.From, To: raw.Port.To}
	}
	// env keeps its key order: walk the object's tokens.
	p.Env = []EnvVar{}
	dec := json.NewDecoder(bytes.NewReader(raw.Env))
	if _, err := dec.Token(); err == nil {
		for dec.More() {
			k, _ := dec.Token()
			var v string
			if err := dec.Decode(&v); err != nil {
				return Process{}, fmt.Errorf("reading a loaded process's env: %w", err)
			}
			p.Env = append(p.Env, EnvVar{Name: k.(string), Value: v})
		}
	}
	return p, nil
}
