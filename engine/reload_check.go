package engine

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
)

// checkReloadJSON answers check-reload (docs/cli.md#control-protocol): the
// daemon loads its config as the next deploy would (its own file, its own
// environment) and compares it with the plan it runs, changing nothing.
// A config that does not load is an error reply with the loader's message,
// as the deploy would get.
func (e *Engine) checkReloadJSON() ([]byte, error) {
	next, err := e.loadConfig()
	if err != nil {
		return nil, err
	}
	var reloadErr *jsconfig.ReloadError
	if errors.As(jsconfig.CheckReload(e.currentPlan(), next), &reloadErr) {
		return jsconfig.Object{
			{Key: "changes", Value: reloadErr.Details},
			{Key: "compatible", Value: false},
			{Key: "configPath", Value: next.Path},
			{Key: "message", Value: reloadErr.Error()},
		}.MarshalJSON()
	}
	return jsconfig.Object{{Key: "compatible", Value: true}, {Key: "configPath", Value: next.Path}}.MarshalJSON()
}

// reloadCheckTimeout bounds doctor's wait for check-reload: the daemon
// evaluates the config, which is bounded by the loader's own deadline.
const reloadCheckTimeout = 15 * time.Second

// reloadCheck asks the running daemon whether it could adopt its config at
// the next deploy. It returns nil when it can (doctor then prints nothing,
// so its output stays what it was), a failed check when a deploy would be
// refused, and a warning when the daemon cannot tell or compares another
// file than configPath, the one doctor checked: the daemon always reloads
// its own file, so its answer says nothing about configPath then.
func reloadCheck(endpoint control.Endpoint, configPath string) *Check {
	const name = "config reload"
	raw, err := control.Call(endpoint, control.SortedRequest("check-reload"), reloadCheckTimeout)
	var daemonErr *control.DaemonError
	switch {
	case errors.As(err, &daemonErr) && strings.HasPrefix(daemonErr.Message, "Unknown command"):
		return &Check{Name: name, OK: true, Warning: true,
			Detail: "the running daemon cannot compare configs (it predates this check); a deploy will still refuse changes that need a daemon restart"}
	case errors.As(err, &daemonErr):
		return &Check{Name: name, Detail: "the running daemon cannot load its config, so the next deploy would fail: " + daemonErr.Message}
	case err != nil:
		return &Check{Name: name, OK: true, Warning: true, Detail: "could not ask the running daemon whether it can adopt the config: " + err.Error()}
	}
	var reply struct {
		Changes    []string `json:"changes"`
		Compatible bool     `json:"compatible"`
		ConfigPath string   `json:"configPath"`
		Message    string   `json:"message"`
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return &Check{Name: name, OK: true, Warning: true, Detail: "the running daemon's answer could not be read: " + err.Error()}
	}
	// The refusal as a deploy prints it: its line, then one per change.
	refusal := reply.Message
	for _, c := range reply.Changes {
		refusal += "\n  " + c
	}
	if !sameConfigFile(reply.ConfigPath, configPath) {
		verdict := "would adopt it"
		if !reply.Compatible {
			verdict = "would refuse it at the next deploy: " + refusal
		}
		return &Check{Name: name, OK: true, Warning: true,
			Detail: "the running daemon loads its config from " + reply.ConfigPath + ", not " + configPath +
				", so this check cannot judge " + configPath + " (the next deploy reads the daemon's file); the daemon " + verdict}
	}
	if reply.Compatible {
		return nil
	}
	return &Check{Name: name, Detail: "the running daemon would refuse " + reply.ConfigPath + " at the next deploy: " + refusal}
}

// sameConfigFile reports whether a and b name one file: equal paths, or
// two names (a symlink, a bind mount) of the same file.
func sameConfigFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}
