package main

import (
	"errors"
	"math"
	"path/filepath"
	"time"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// daemonStartFlags are the options of ensure-daemon, shared by deploy.
type daemonStartFlags struct {
	logPath, pidPath, runtimePath, timeout string
}

func (f *daemonStartFlags) register(cmd *cobra.Command, forDeploy bool) {
	logHelp, pidHelp, timeoutHelp := "Daemon log path", "Daemon PID file path", "How long to wait for the daemon to accept control commands"
	if forDeploy {
		logHelp = "Log path used when --ensure-daemon starts the daemon"
		pidHelp = "PID file path used when --ensure-daemon starts the daemon"
		timeoutHelp = "How long to wait for an ensured daemon to accept control commands"
	}
	cmd.Flags().StringVar(&f.logPath, "daemon-log-path", "", logHelp)
	cmd.Flags().StringVar(&f.pidPath, "daemon-pid-path", "", pidHelp)
	// The Node.js rollbridge copied itself there; this build runs its own
	// executable, so the option is only accepted
	// (docs/cli.md#deleting-old-releases-is-safe).
	cmd.Flags().StringVar(&f.runtimePath, "daemon-runtime-path", "", "Ignored; accepted for compatibility with the Node.js rollbridge")
	cmd.Flags().StringVar(&f.timeout, "daemon-start-timeout-ms", "10000", timeoutHelp)
	for _, n := range []string{"daemon-log-path", "daemon-pid-path", "daemon-runtime-path"} {
		setPlaceholder(cmd, n, "<path>")
	}
	setPlaceholder(cmd, "daemon-start-timeout-ms", "<ms>")
}

// ensure validates the timeout and ensures a daemon of this build runs.
func (f *daemonStartFlags) ensure(plan *jsconfig.Plan) ([]byte, error) {
	ms, ok := jsNumber(f.timeout)
	if !ok || math.IsInf(ms, 0) || ms < 1 {
		return nil, errors.New("--daemon-start-timeout-ms must be a positive number")
	}
	identity, err := engine.ExecutableIdentity(version)
	if err != nil {
		return nil, err
	}
	return engine.EnsureDaemon(engine.EnsureOptions{
		Plan: plan, Identity: identity, LogPath: f.logPath, PIDPath: f.pidPath,
		StartTimeout: time.Duration(ms * float64(time.Millisecond)), TimeoutText: f.timeout,
	})
}

func newEnsureDaemonCommand() *cobra.Command {
	var configPath string
	var daemon daemonStartFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ensure-daemon",
		Short: "Start the daemon if the control socket is not already accepting commands.",
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := loadPlan(cmd, configPath)
			if err != nil {
				return err
			}
			person := forPerson(cmd, asJSON)
			var before control.ProbeResult
			if person {
				// Whether one answered before, only to say "started" or
				// "already running".
				before, _ = control.Probe(engine.ControlEndpoint(plan.Control))
			}
			status, err := daemon.ensure(plan)
			if err != nil {
				return err
			}
			if !person {
				return printPretty(cmd.OutOrStdout(), status)
			}
			return printResult(cmd.OutOrStdout(), status, func() string {
				pid, _ := control.DaemonPID(engine.ControlEndpoint(plan.Control))
				return ensureSummary(status, !before.Rollbridge, pid)
			})
		},
	}
	addConfigFlag(cmd, &configPath)
	daemon.register(cmd, false)
	addJSONFlag(cmd, &asJSON)
	return cmd
}

func newDeployCommand() *cobra.Command {
	var configPath, releasePath, releaseID, revision string
	var ensure, asJSON bool
	var daemon daemonStartFlags
	var hold holdFlags
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Deploy a release: start it, health-check its web process, switch traffic to it, drain the previous one.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("release-path") {
				return &usageError{cmd: cmd, text: "required option '--release-path <path>' not specified"}
			}
			holdFields, err := hold.fields(cmd)
			if err != nil {
				return err
			}
			plan, err := loadPlan(cmd, configPath)
			if err != nil {
				return err
			}
			if ensure {
				if _, err := daemon.ensure(plan); err != nil {
					return err
				}
			}
			if hold.on {
				if err := probeTraffic(plan); err != nil {
					return err
				}
			}
			fields := holdFields
			if cmd.Flags().Changed("release-id") {
				fields = append(fields, jsconfig.Field{Key: "releaseId", Value: releaseID})
			}
			fields = append(fields, jsconfig.Field{Key: "releasePath", Value: absReleasePath(releasePath)})
			if cmd.Flags().Changed("revision") {
				fields = append(fields, jsconfig.Field{Key: "revision", Value: revision})
			}
			return relayOperation(cmd, plan, control.SortedRequest("deploy", fields...), switchSummarizer(cmd, asJSON, "Deployed"))
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().StringVar(&releasePath, "release-path", "", "Release path (required)")
	cmd.Flags().StringVar(&releaseID, "release-id", "", "Release id")
	cmd.Flags().StringVar(&revision, "revision", "", "Revision")
	cmd.Flags().BoolVar(&ensure, "ensure-daemon", false, "Start the Rollbridge daemon if it is not already running")
	hold.register(cmd)
	addJSONFlag(cmd, &asJSON)
	setPlaceholder(cmd, "release-path", "<path>")
	setPlaceholder(cmd, "release-id", "<id>")
	setPlaceholder(cmd, "revision", "<sha>")
	daemon.register(cmd, true)
	return cmd
}

// absReleasePath resolves a relative release path against the caller's
// working directory, as doctor --release-path does: the daemon runs
// elsewhere and would resolve it against its own (docs/cli.md#deploy).
// "" stays "", so the daemon still answers "releasePath is required".
func absReleasePath(path string) string {
	if path == "" {
		return path
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	return abs
}
