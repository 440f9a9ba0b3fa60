package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// summarizer renders a command's reply for a person, with the daemon's
// status after it when it needs that; "" falls back to the JSON.
type summarizer func(reply []byte, status func() []byte) string

// relayOperation sends a deploy, rollback or restart request to the
// daemon of plan and prints the reply, showing the operation's progress
// on a terminal, and summarised by summarize when it is not nil. It
// waits as long as the operation runs (boot, health check, stop
// sequences).
func relayOperation(cmd *cobra.Command, plan *jsconfig.Plan, request []byte, summarize summarizer) error {
	p := startProgress(cmd.ErrOrStderr(), plan)
	raw, err := p.call(plan, request) // Ctrl-C says what becomes of the operation
	p.finish()
	if err != nil {
		return err
	}
	// The status after the reply, asked once for the summary and the
	// draining line, and only when one of them needs it.
	status := sync.OnceValue(func() []byte {
		s, _ := control.Call(engine.ControlEndpoint(plan.Control), control.SortedRequest("status"), control.ReadTimeout)
		return s
	})
	if summarize != nil {
		if text := summarize(raw, status); text != "" {
			// It names what the previous release drains: the progress
			// does not say it again.
			_, err := io.WriteString(cmd.OutOrStdout(), text)
			return err
		}
	}
	p.drainLine(previousRelease(raw), status)
	return printPretty(cmd.OutOrStdout(), raw)
}

// printResult prints summary's text when summary is not nil and has
// some, and the reply's JSON otherwise.
func printResult(w io.Writer, raw []byte, summary func() string) error {
	if summary != nil {
		if text := summary(); text != "" {
			_, err := io.WriteString(w, text)
			return err
		}
	}
	return printPretty(w, raw)
}

// switchSummarizer summarises a deploy or rollback on a terminal, nil
// otherwise.
func switchSummarizer(cmd *cobra.Command, asJSON bool, verb string) summarizer {
	if !forPerson(cmd, asJSON) {
		return nil
	}
	pal := newPalette(cmd.OutOrStdout())
	return func(reply []byte, status func() []byte) string {
		return switchSummary(verb, reply, status(), pal)
	}
}

func newRollbackCommand() *cobra.Command {
	var configPath, releaseID string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Roll back to a previous release: re-start it, health-check it, and switch traffic.",
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := loadPlan(cmd, configPath)
			if err != nil {
				return err
			}
			return relayOperation(cmd, plan, optionalReleaseRequest(cmd, "rollback", releaseID), switchSummarizer(cmd, asJSON, "Rolled back to"))
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().StringVar(&releaseID, "release-id", "", "Release id to roll back to (defaults to the most recently retired release)")
	addJSONFlag(cmd, &asJSON)
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
	var configPath, socket, releaseID string
	var yes, asJSON bool
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the active release (the site answers 503 until the next deploy) or the release named by --release-id, at once, without draining.",
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if cmd.Flags().Changed("release-id") {
				id = releaseID
			}
			// A confirmed stop names the release the person agreed to stop,
			// so an operation queued before it that activates another
			// release does not turn it into a stop of that one.
			confirmed := ""
			var confirm func([]byte, error) error
			// A person is asked only with stdout on a terminal too and no
			// --json: output read by a program means a program runs this.
			if !yes && forPerson(cmd, asJSON) {
				ask := activeStopConfirmation(cmd.InOrStdin(), cmd.ErrOrStderr(), id)
				confirm = func(status []byte, statusErr error) (err error) {
					confirmed, err = ask(status, statusErr)
					return err
				}
			}
			request := func() []byte {
				if confirmed != "" {
					return control.SortedRequest("stop", jsconfig.Field{Key: "releaseId", Value: confirmed})
				}
				return optionalReleaseRequest(cmd, "stop", releaseID)
			}
			var summarize func(before, reply []byte) string
			if forPerson(cmd, asJSON) {
				pal := newPalette(cmd.OutOrStdout())
				summarize = func(before, reply []byte) string { return stopSummary(id, before, reply, pal) }
			}
			return relayStop(cmd, configPath, socket, releaseStopWait(id), request, confirm, summarize)
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().StringVar(&releaseID, "release-id", "", "Release id")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "Stop the active release without asking (a terminal asks first; scripts are never asked)")
	addSocketFlag(cmd, &socket)
	addJSONFlag(cmd, &asJSON)
	setPlaceholder(cmd, "release-id", "<id>")
	return cmd
}

func newRestartCommand(stderr interface{ Write([]byte) (int, error) }) *cobra.Command {
	var configPath, process, policy string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Restart running non-proxied processes (by id, by policy, or all).",
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("policy") && policy != "companion" && policy != "singleton" && policy != "service" {
				fmt.Fprintln(stderr, "--policy must be one of: companion, singleton, service.")
				return exitCode(1)
			}
			var summarize summarizer
			if forPerson(cmd, asJSON) {
				summarize = func(reply []byte, _ func() []byte) string { return restartSummary(reply) }
			}
			plan, err := loadPlan(cmd, configPath)
			if err != nil {
				return err
			}
			var fields []jsconfig.Field
			if cmd.Flags().Changed("policy") {
				fields = append(fields, jsconfig.Field{Key: "policy", Value: policy})
			}
			if cmd.Flags().Changed("process") {
				fields = append(fields, jsconfig.Field{Key: "processId", Value: process})
			}
			return relayOperation(cmd, plan, control.SortedRequest("restart", fields...), summarize)
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().StringVar(&process, "process", "", "Restart only the process with this id")
	cmd.Flags().StringVar(&policy, "policy", "", "Restart only processes with this policy (companion, singleton, or service)")
	addJSONFlag(cmd, &asJSON)
	setPlaceholder(cmd, "process", "<id>")
	setPlaceholder(cmd, "policy", "<policy>")
	_ = cmd.RegisterFlagCompletionFunc("policy", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"companion", "singleton", "service"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}
