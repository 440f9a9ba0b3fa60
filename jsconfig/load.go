// Package jsconfig finds and evaluates rollbridge.js, and turns its default
// export into a typed, validated Plan. It never starts processes or touches
// sockets; the engine works from the Plan alone.
package jsconfig

import (
	"io"
	"os"
	"time"
)

// DefaultTimeout bounds evaluation plus awaiting
// (docs/config.md#25-load-errors-and-the-time-limit).
const DefaultTimeout = 10 * time.Second

// LoadError is a failure to read or evaluate the config module.
type LoadError struct {
	Message string
}

func (e *LoadError) Error() string { return e.Message }

// Options tune a load. The zero value is what the CLI uses.
type Options struct {
	// Timeout bounds the load; 0 means DefaultTimeout.
	Timeout time.Duration
	// Stdout and Stderr receive console output of the config; nil means
	// the process's own streams.
	Stdout, Stderr io.Writer
	// PID and PPID, when positive, are what process.pid and process.ppid
	// show instead of this process's own: the daemon loads its config in
	// a child process, and the config must see the daemon's (a config may
	// hand process.pid to a managed process that signals the daemon).
	PID, PPID int
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

func (o Options) pid() int {
	if o.PID > 0 {
		return o.PID
	}
	return os.Getpid()
}

func (o Options) ppid() int {
	if o.PPID > 0 {
		return o.PPID
	}
	return os.Getppid()
}

func (o Options) stdout() io.Writer {
	if o.Stdout != nil {
		return o.Stdout
	}
	return os.Stdout
}

func (o Options) stderr() io.Writer {
	if o.Stderr != nil {
		return o.Stderr
	}
	return os.Stderr
}

// Check loads the config at abs and validates it, collecting every issue.
// err is a *LoadError when the file could not be read or evaluated; then
// plan and issues are nil. With issues, plan is the best-effort
// normalization and must not be used to run anything.
func Check(abs string, opts Options) (plan *Plan, issues []Issue, err error) {
	deadline := time.Now().Add(opts.timeout())
	if _, err := readFileNode(abs); err != nil {
		return nil, nil, &LoadError{Message: err.Error()}
	}
	// The runtime is set up while esbuild bundles the config.
	e := startEvaluator(abs, deadline, opts)
	b, err := bundleConfig(abs)
	if err != nil {
		e.stop()
		return nil, nil, err
	}
	o := e.run(b)
	return o.plan, o.issues, o.err
}

// Load is the strict load every command but validate and doctor uses: a
// load error is returned as is, validation issues as a *ValidationError.
func Load(abs string, opts Options) (*Plan, error) {
	plan, issues, err := Check(abs, opts)
	if err != nil {
		return nil, err
	}
	if len(issues) > 0 {
		return nil, &ValidationError{Issues: issues}
	}
	return plan, nil
}
