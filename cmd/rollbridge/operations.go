package main

import (
	"fmt"
	"time"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// relay loads the config, sends one request and prints the reply.
// readTimeout 0 suits mutating commands, which run as long as their stop
// sequences take.
func relay(cmd *cobra.Command, configPath string, readTimeout time.Duration, request func() []byte) error {
	return relayShowing(cmd, configPath, readTimeout, false, request)
}

// relayShowing is relay with the command's progress shown on a terminal.
func relayShowing(cmd *cobra.Command, configPath string, readTimeout time.Duration, showProgress bool, request func() []byte) error {
	plan, err := loadPlan(cmd, configPath)
	if err != nil {
		return err
	}
	var p *progress
	if showProgress {
		p = startProgress(cmd.ErrOrStderr(), plan)
	}
	var raw []byte
	if p != nil {
		raw, err = p.call(plan, request()) // Ctrl-C says what becomes of the operation
	} else {
		raw, err = control.Call(engine.ControlEndpoint(plan.Control), request(), readTimeout)
	}
	p.finish(plan, previousRelease(raw))
	if err != nil {
		return err
	}
	return printPretty(cmd.OutOrStdout(), raw)
}

func newRollbackCommand() *cobra.Command {
	var configPath, releaseID string
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Roll back to a previous release: re-start it, health-check it, and switch traffic.",
		RunE: func(cmd *cobra.Command, args []string) error {
			return relayShowing(cmd, configPath, 0, true, func() []byte {
				return optionalReleaseRequest(cmd, "rollback", releaseID)
			})
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().StringVar(&releaseID, "release-id", "", "Release id to roll back to (defaults to the most recently retired release)")
	setPlaceholder(cmd, "release-id", "<id>")
	return cmd
}

// optionalReleaseRequest is a request for command that names a release
// only when --release-id was given (the daemon then picks one itself).
func optionalReleaseRequest(cmd *cobra.Command, command, releaseID string) []byte {
	var fields []jsconfig.Field
	if cmd.Flags().Changed("release-id") {
		fields = append(fields, jsconfig.Field{Key: "releaseId", Value: releaseID})
	}
	return control.SortedRequest(command, fields...)
}

func newStopCommand() *cobra.Command {
	var configPath, releaseID string
	cmd := &cobra.Command{
		Use: "stop",
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if cmd.Flags().Changed("release-id") {
				id = releaseID
			}
			return relayStop(cmd, configPath, releaseStopWait(id), optionalReleaseRequest(cmd, "stop", releaseID))
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().StringVar(&releaseID, "release-id", "", "Release id")
	setPlaceholder(cmd, "release-id", "<id>")
	return cmd
}

func newRestartCommand(stderr interface{ Write([]byte) (int, error) }) *cobra.Command {
	var configPath, process, policy string
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Restart running non-proxied processes (by id, by policy, or all).",
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("policy") && policy != "companion" && policy != "singleton" && policy != "service" {
				fmt.Fprintln(stderr, "--policy must be one of: companion, singleton, service.")
				return exitCode(1)
			}
			return relayShowing(cmd, configPath, 0, true, func() []byte {
				var fields []jsconfig.Field
				if cmd.Flags().Changed("policy") {
					fields = append(fields, jsconfig.Field{Key: "policy", Value: policy})
				}
				if cmd.Flags().Changed("process") {
					fields = append(fields, jsconfig.Field{Key: "processId", Value: process})
				}
				return control.SortedRequest("restart", fields...)
			})
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().StringVar(&process, "process", "", "Restart only the process with this id")
	cmd.Flags().StringVar(&policy, "policy", "", "Restart only processes with this policy (companion, singleton, or service)")
	setPlaceholder(cmd, "process", "<id>")
	setPlaceholder(cmd, "policy", "<policy>")
	_ = cmd.RegisterFlagCompletionFunc("policy", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"companion", "singleton", "service"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}
