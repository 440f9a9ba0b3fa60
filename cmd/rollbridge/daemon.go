package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// tuneDaemonProcess sizes the daemon's scheduler: the proxy shares the
// machine with the app it fronts, and on a small machine one OS thread
// running Go code proxies as many requests per second with less CPU per
// request than two competing with the app for the same cores (measured
// with wrk on 2 vCPUs: the same requests/s, ~15% less CPU per request;
// docs/benchmarks.md). It also undoes main's collector setting for
// short-lived commands: the daemon runs for months. GOMAXPROCS and GOGC in
// the environment win.
func tuneDaemonProcess() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(1, runtime.NumCPU()/2))
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(100)
	}
}

func newDaemonCommand() *cobra.Command {
	var configPath, metricsAddress string
	var boot bootFlags
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the supervisor in the foreground: the proxy, the control socket and the managed processes.",
		RunE: func(cmd *cobra.Command, args []string) error {
			// Read and drop at once: the config and the managed processes
			// inherit the daemon's environment.
			pidFile := os.Getenv(engine.EnsuredPIDFileEnv)
			os.Unsetenv(engine.EnsuredPIDFileEnv)
			tuneDaemonProcess()
			boot.setFrom(cmd)
			config := chooseConfig(cmd, configPath)
			bootstrap, err := boot.validate(config.path, config.given)
			if err != nil {
				return err
			}
			cwd, err := os.Getwd()
			if err != nil {
				return err
			}
			loc, err := jsconfig.Locate(config.path, config.given, cwd)
			if err != nil {
				return err
			}
			load := func() (*jsconfig.Plan, error) { return engine.LoadConfigIsolated(loc.Abs, cmd.ErrOrStderr()) }
			plan, err := load()
			if err != nil {
				return err
			}
			identity, err := engine.ExecutableIdentity(version)
			if err != nil {
				return err
			}
			if boot.takeover && (bootstrap == nil || bootstrap.Attestation == "") {
				return errors.New("Daemon --takeover-owner requires the complete bootstrap release tuple and --boot-attestation.")
			}
			// On a terminal the log is for the person watching it; piped
			// (journald, files) it stays one JSON object per line.
			logOut := cmd.OutOrStdout()
			if isTerminal(logOut) {
				logOut = &readableLog{out: logOut, pal: newPalette(logOut), zone: time.Local}
			}
			d := engine.New(engine.Options{
				ConfigPath: plan.Path, Plan: plan, Identity: identity, LoadConfig: load,
				Stdout: logOut, Stderr: cmd.ErrOrStderr(),
				Bootstrap: bootstrap, Takeover: boot.takeover, MetricsAddress: metricsAddress,
				PIDFile: pidFile,
			})
			return d.Serve()
		},
	}
	addConfigFlag(cmd, &configPath)
	f := cmd.Flags()
	f.StringVar(&boot.releasePath, "release-path", "", "Bootstrap release path (requires --config, --release-id, and --revision)")
	f.StringVar(&boot.releaseID, "release-id", "", "Bootstrap release id (requires --config, --release-path, and --revision)")
	f.StringVar(&boot.revision, "revision", "", "Bootstrap revision (requires --config, --release-path, and --release-id)")
	f.StringVar(&boot.attestation, "boot-attestation", "", "Opaque bootstrap ownership attestation (requires the complete bootstrap release tuple)")
	f.BoolVar(&boot.takeover, "takeover-owner", false, "Boot and health-check before retiring the current external owner")
	f.StringVar(&metricsAddress, "metrics-address", "", "Serve Prometheus metrics on http://<address>/metrics, e.g. 127.0.0.1:9464 (off by default)")
	setPlaceholder(cmd, "release-path", "<path>")
	setPlaceholder(cmd, "release-id", "<id>")
	setPlaceholder(cmd, "revision", "<sha>")
	setPlaceholder(cmd, "boot-attestation", "<digest>")
	setPlaceholder(cmd, "metrics-address", "<address>")
	return cmd
}

// bootFlags are the daemon's bootstrap options
// (docs/cli.md#bootstrap-starting-with-a-known-release).
type bootFlags struct {
	releasePath, releaseID, revision, attestation string
	hasPath, hasID, hasRevision, hasAttestation   bool
	takeover                                      bool
}

func (b *bootFlags) setFrom(cmd *cobra.Command) {
	f := cmd.Flags()
	b.hasPath, b.hasID, b.hasRevision = f.Changed("release-path"), f.Changed("release-id"), f.Changed("revision")
	b.hasAttestation = f.Changed("boot-attestation")
}

// safeIdentifier reports whether s is 1–200 letters, digits, dots,
// underscores and hyphens, starting with a letter or digit. (Written out
// rather than as a regexp: compiling the {0,199} repetition cost every
// command about a millisecond at start-up.)
func safeIdentifier(s string) bool {
	if len(s) == 0 || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// normalizedPath accepts a clean path, or a clean path plus one trailing
// slash.
func normalizedPath(p string) bool {
	return p == filepath.Clean(p) || (p != "/" && p == filepath.Clean(p)+"/")
}

// validate checks the bootstrap options before anything is loaded or bound,
// in the order docs/cli.md#bootstrap-starting-with-a-known-release lists
// them. It returns nil for a plain daemon.
func (b *bootFlags) validate(configPath string, configGiven bool) (*engine.Bootstrap, error) {
	any := b.hasPath || b.hasID || b.hasRevision
	if b.hasAttestation && !any {
		return nil, errors.New("Daemon --boot-attestation is accepted only with --config, --release-path, --release-id, and --revision.")
	}
	if !any {
		return nil, nil
	}
	if !configGiven || !b.hasPath || !b.hasID || !b.hasRevision {
		return nil, errors.New("Daemon bootstrap options --config, --release-path, --release-id, and --revision must be provided together.")
	}
	switch {
	case !filepath.IsAbs(configPath):
		return nil, errors.New("Daemon bootstrap --config must be an absolute path.")
	case !normalizedPath(configPath):
		return nil, errors.New("Daemon bootstrap --config must be normalized and must not contain unsafe traversal segments.")
	case !filepath.IsAbs(b.releasePath):
		return nil, errors.New("Daemon bootstrap --release-path must be an absolute path.")
	case !normalizedPath(b.releasePath):
		return nil, errors.New("Daemon bootstrap --release-path must be normalized and must not contain unsafe traversal segments.")
	case !safeIdentifier(b.releaseID):
		return nil, errors.New("Daemon bootstrap --release-id must be a non-empty safe identifier containing only letters, numbers, dots, underscores, and hyphens.")
	case !safeIdentifier(b.revision):
		return nil, errors.New("Daemon bootstrap --revision must be a non-empty safe identifier containing only letters, numbers, dots, underscores, and hyphens.")
	case b.hasAttestation && !engine.CanonicalAttestation(b.attestation):
		return nil, errors.New("Daemon bootstrap --boot-attestation must use the canonical sha256:<64 lowercase hex> format.")
	}
	st, err := os.Stat(b.releasePath)
	if err != nil {
		return nil, fmt.Errorf("Daemon bootstrap --release-path is not accessible: %s", jsconfig.NodeError(err, "stat", b.releasePath))
	}
	if !st.IsDir() {
		return nil, errors.New("Daemon bootstrap --release-path must name a directory.")
	}
	return &engine.Bootstrap{ReleasePath: b.releasePath, ReleaseID: b.releaseID, Revision: b.revision, Attestation: b.attestation}, nil
}

// newLoadConfigCommand is the hidden helper the daemon runs to load its
// config out of process (engine.LoadConfigIsolated); the daemon passes its
// pid and parent pid for process.pid and process.ppid.
func newLoadConfigCommand() *cobra.Command {
	var pid, ppid int
	cmd := &cobra.Command{
		Use:    engine.LoadConfigCommand + " <config>",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return engine.ServeConfigLoad(args[0], pid, ppid, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().IntVar(&pid, "daemon-pid", 0, "process.pid for the config (the daemon's pid)")
	cmd.Flags().IntVar(&ppid, "daemon-ppid", 0, "process.ppid for the config (the daemon's parent pid)")
	return cmd
}
