package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/spf13/cobra"
)

func newRecoverCommand() *cobra.Command {
	var configPath string
	var force bool
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Stop orphaned processes left by a crashed daemon (reads statePath; lists them unless --force).",
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := loadPlan(cmd, configPath)
			if err != nil {
				return err
			}
			rec, err := engine.Recover(plan, force)
			if errors.Is(err, engine.ErrNoStatePath) || (err != nil && rec == nil) {
				// Printed as is, without the "Error: " prefix.
				fmt.Fprintln(cmd.ErrOrStderr(), err.Error())
				return exitCode(1)
			}
			if err != nil {
				return err
			}
			return writeRecovery(cmd.OutOrStdout(), cmd.ErrOrStderr(), rec, force)
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().BoolVar(&force, "force", false, "Stop the orphaned processes; without it, recover only lists them")
	return cmd
}

// writeRecovery prints recover's report (docs/cli.md#recover).
func writeRecovery(stdout, stderr io.Writer, rec *engine.Recovery, force bool) error {
	var b strings.Builder
	switch {
	case len(rec.Found) == 0 && force:
		b.WriteString("No orphaned processes found; cleared the state file.\n")
	case len(rec.Found) == 0:
		b.WriteString("No orphaned processes found.\n")
	case !force:
		fmt.Fprintf(&b, "Found %s (run with --force to stop):\n", engine.OrphanLabel(len(rec.Found)))
		b.WriteString(engine.OrphanLines(rec.Found))
		b.WriteString("Review the list first — a recycled pid could be an unrelated process.\n")
		if len(rec.Unconfirmed) > 0 {
			fmt.Fprintf(&b, "%s; --force will leave them alone:\n%s", unconfirmedHeader(len(rec.Unconfirmed)), engine.OrphanLines(rec.Unconfirmed))
		}
	default:
		if len(rec.Stopped) > 0 {
			fmt.Fprintf(&b, "Stopped %s:\n%s", engine.OrphanLabel(len(rec.Stopped)), engine.OrphanLines(rec.Stopped))
		}
		if len(rec.Skipped) > 0 {
			fmt.Fprintf(&b, "Skipped %s that no longer lead their process group (pid likely recycled):\n%s", engine.OrphanLabel(len(rec.Skipped)), engine.OrphanLines(rec.Skipped))
		}
		if len(rec.Unconfirmed) > 0 {
			fmt.Fprintf(&b, "%s; left running:\n%s", unconfirmedHeader(len(rec.Unconfirmed)), engine.OrphanLines(rec.Unconfirmed))
			b.WriteString("Check each with \"ps -o pid,pgid,lstart,args -p <pid>\" and stop the leftovers yourself (\"kill -TERM -- -<pid>\"); the state file stays in place until they are gone.\n")
		}
		if len(rec.Survivors) > 0 {
			fmt.Fprintf(&b, "Could not stop %s — still running (check permissions/ownership):\n%s", engine.OrphanLabel(len(rec.Survivors)), engine.OrphanLines(rec.Survivors))
			b.WriteString("Left the state file in place so you can investigate and re-run recover.\n")
			io.WriteString(stderr, b.String())
			return exitCode(1)
		}
	}
	if force && rec.KeptTraffic != "" {
		fmt.Fprintf(&b, "The state file keeps the recorded traffic state (%s) for the next daemon; run \"rollbridge resume\" (or \"rollbridge maintenance off\") on it when the application may serve.\n", rec.KeptTraffic)
	}
	_, err := io.WriteString(stdout, b.String())
	return err
}

// unconfirmedHeader introduces the orphans recover never signals because
// their identity cannot be confirmed.
func unconfirmedHeader(n int) string {
	return "Cannot confirm the identity of " + engine.OrphanLabel(n) + " (recorded without a start time, and not started before the state file was written)"
}
