package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
)

// EnsureOptions is what ensure-daemon needs (docs/cli.md#ensure-daemon).
type EnsureOptions struct {
	Plan         *jsconfig.Plan
	Identity     Identity // of the invoking CLI
	LogPath      string   // "" → /tmp/rollbridge-<application>.log
	PIDPath      string   // "" → /tmp/rollbridge-<application>.pid
	StartTimeout time.Duration
	TimeoutText  string // the timeout as the user gave it, for the message
}

// EnsuredPIDFileEnv passes the daemon started by ensure-daemon the path of
// its pid file (absolute), so that it removes the file when it exits after
// a shutdown; an environment variable keeps `rollbridge daemon --help` free
// of an option only ensure-daemon uses. The daemon unsets it at once, so
// neither its config nor its processes see it.
const EnsuredPIDFileEnv = "ROLLBRIDGE_ENSURED_PID_FILE"

// ErrMismatchedRuntime refuses a daemon of another build
// (docs/troubleshooting.md#legacy-or-mismatched-runtime).
var ErrMismatchedRuntime = errors.New("The running Rollbridge daemon has a legacy or mismatched runtime. The deploy was not sent. Keep the current release active, then explicitly stop and restart the daemon with this Rollbridge installation before retrying.")

// EnsureDaemon returns the status of a responsive daemon of this very
// build, starting a detached one first when none answers.
func EnsureDaemon(o EnsureOptions) ([]byte, error) {
	ep := ControlEndpoint(o.Plan.Control)
	status, err := control.Call(ep, control.SortedRequest("status"), control.ReadTimeout)
	if err == nil {
		return status, checkRuntime(status, o.Identity)
	}
	if !control.NoDaemon(err) {
		return nil, err
	}
	child, err := startDetached(o)
	if err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()

	deadline := time.Now().Add(o.StartTimeout)
	var lastErr error
	for {
		// Each poll waits at most a second, so the timeout is kept.
		wait := min(time.Until(deadline), time.Second)
		status, err := control.Call(ep, control.SortedRequest("status"), max(wait, 100*time.Millisecond))
		if err == nil {
			_ = child.Process.Release()
			return status, checkRuntime(status, o.Identity)
		}
		if !control.NoDaemon(err) {
			lastErr = err
		}
		select {
		case werr := <-exited:
			// It will never answer: say why instead of waiting out the timeout.
			how := "with status 0"
			if werr != nil {
				how = "(" + werr.Error() + ")"
			}
			return nil, notReady(o, fmt.Errorf("the daemon exited %s; its log is %s", how, logPath(o)))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, notReady(o, lastErr) // the daemon is left running; it may still come up
		}
	}
}

func notReady(o EnsureOptions, last error) error {
	msg := "Rollbridge daemon did not become ready within " + o.TimeoutText + "ms."
	if last != nil {
		msg += " Last error: " + last.Error()
	}
	return errors.New(msg)
}

// checkRuntime reuses a daemon only when it runs this very build.
func checkRuntime(status []byte, want Identity) error {
	var s struct {
		DaemonRuntime *struct {
			Digest  any `json:"digest"`
			Format  any `json:"format"`
			Version any `json:"version"`
		} `json:"daemonRuntime"`
	}
	if json.Unmarshal(status, &s) != nil || s.DaemonRuntime == nil {
		return ErrMismatchedRuntime
	}
	rt := s.DaemonRuntime
	if rt.Digest != want.Digest || rt.Version != want.Version || rt.Format != float64(want.Format) {
		return ErrMismatchedRuntime
	}
	return nil
}

func logPath(o EnsureOptions) string {
	if o.LogPath != "" {
		return o.LogPath
	}
	return "/tmp/rollbridge-" + o.Plan.Application + ".log"
}

func pidPath(o EnsureOptions) string {
	if o.PIDPath != "" {
		return o.PIDPath
	}
	return "/tmp/rollbridge-" + o.Plan.Application + ".pid"
}

// startDetached starts this executable as a daemon in its own session,
// with the absolute config path, stdout and stderr appended to the log.
// Both files are opened (and checked, see openDaemonFile) before anything
// starts, so a refused file starts nothing.
func startDetached(o EnsureOptions) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logFile, pidFile := logPath(o), pidPath(o)
	absPIDFile, err := filepath.Abs(pidFile)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{logFile, pidFile} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
	}
	logF, err := openDaemonFile(logFile, "daemon log", "--daemon-log-path", true)
	if err != nil {
		return nil, err
	}
	defer logF.Close()
	pidF, err := openDaemonFile(pidFile, "daemon pid file", "--daemon-pid-path", false)
	if err != nil {
		logF.discard()
		return nil, err
	}
	defer pidF.Close()
	cmd := exec.Command(exe, "daemon", "--config", o.Plan.Path)
	cmd.Env = append(os.Environ(), EnsuredPIDFileEnv+"="+absPIDFile)
	cmd.Stdout, cmd.Stderr = logF.File, logF.File
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := pidF.Truncate(0); err != nil {
		return cmd, err
	}
	if _, err := pidF.WriteString(strconv.Itoa(cmd.Process.Pid) + "\n"); err != nil {
		return cmd, err
	}
	return cmd, nil
}
