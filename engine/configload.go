package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// LoadConfigCommand is the hidden command a daemon runs to load its config
// in a child process: the daemon itself never runs esbuild or JavaScript,
// so their code and garbage never weigh on its memory.
const LoadConfigCommand = "__load-config"

// loadResult is what the child writes on stdout.
type loadResult struct {
	Plan  json.RawMessage   `json:"plan,omitempty"`
	Error string            `json:"error,omitempty"`
	Set   map[string]string `json:"set,omitempty"`   // process.env changes made by the config
	Unset []string          `json:"unset,omitempty"` // variables the config deleted
}

// ServeConfigLoad is the child's side: load the config at abs strictly and
// write the result (the normalized plan, or the error) to stdout. The
// config's console output goes to stderr. pid and ppid are the daemon's,
// for process.pid and process.ppid: the Node.js rollbridge evaluates the
// config inside the daemon, and configs hand process.pid to processes
// that signal the daemon.
func ServeConfigLoad(abs string, pid, ppid int, stdout, stderr io.Writer) error {
	before := environMap()
	plan, err := jsconfig.Load(abs, jsconfig.Options{Stdout: stderr, Stderr: stderr, PID: pid, PPID: ppid})
	var res loadResult
	if err != nil {
		res.Error = err.Error()
	} else {
		if res.Plan, err = plan.MarshalJSON(); err != nil {
			return err
		}
		after := environMap()
		for k, v := range after {
			if old, ok := before[k]; !ok || old != v {
				if res.Set == nil {
					res.Set = map[string]string{}
				}
				res.Set[k] = v
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				res.Unset = append(res.Unset, k)
			}
		}
	}
	return json.NewEncoder(stdout).Encode(res)
}

func environMap() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// LoadConfigIsolated loads the config at abs in a child process of this
// very executable (/proc/self/exe, which works even after the file was
// deleted or replaced) and applies the config's process.env changes here,
// as an in-process load would. Console output of the config goes to stderr.
func LoadConfigIsolated(abs string, stderr io.Writer) (*jsconfig.Plan, error) {
	exe := "/proc/self/exe"
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	return LoadConfigWith(exe, abs, stderr)
}

// LoadConfigWith is LoadConfigIsolated with the rollbridge executable to
// run named (tests run the daemon inside a test binary). The config sees
// the calling process's pid and parent pid as process.pid and
// process.ppid, not the child's.
func LoadConfigWith(exe, abs string, stderr io.Writer) (*jsconfig.Plan, error) {
	ctx, cancel := context.WithTimeout(context.Background(), jsconfig.DefaultTimeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, LoadConfigCommand,
		"--daemon-pid", strconv.Itoa(os.Getpid()), "--daemon-ppid", strconv.Itoa(os.Getppid()), "--", abs)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("loading the config in a child process failed: %w", err)
	}
	var res loadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("loading the config in a child process failed: %w", err)
	}
	if res.Error != "" {
		return nil, errors.New(res.Error)
	}
	for k, v := range res.Set {
		os.Setenv(k, v)
	}
	for _, k := range res.Unset {
		os.Unsetenv(k)
	}
	return jsconfig.UnmarshalPlan(res.Plan, abs)
}
