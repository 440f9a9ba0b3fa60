package main

import (
	"fmt"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/spf13/cobra"
)

func newPredeployCleanupCommand() *cobra.Command {
	var configPath, releasePath string
	cmd := &cobra.Command{
		Use:   "predeploy-cleanup",
		Short: "Prepare a host for deploy: recover Rollbridge orphans and stop configured legacy processes when no release is active.",
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := loadPlan(cmd, configPath)
			if err != nil {
				return err
			}
			pending := ""
			if cmd.Flags().Changed("release-path") {
				pending = releasePath
			}
			res, err := engine.PredeployCleanup(plan, pending)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.NothingToDo {
				fmt.Fprintln(out, "Rollbridge daemon already has an active release; no legacy cleanup needed.")
				return nil
			}
			if res.StoppedDaemon {
				fmt.Fprintln(out, "Stopped existing Rollbridge daemon before deploy.")
			} else {
				fmt.Fprintln(out, "No active Rollbridge daemon found.")
			}
			fmt.Fprintf(out, "Recovered %d Rollbridge orphaned %s.\n", res.RecoveredCount, plural(res.RecoveredCount, "process", "processes"))
			if n := len(res.Unconfirmed); n > 0 {
				fmt.Fprintf(out, "Left %d Rollbridge orphaned %s running whose identity cannot be confirmed; run \"rollbridge recover\" to review %s.\n", n, plural(n, "process", "processes"), plural(n, "it", "them"))
			}
			fmt.Fprintf(out, "Stopped %d legacy %s.\n", res.StoppedLegacies, plural(res.StoppedLegacies, "process", "processes"))
			return nil
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().StringVar(&releasePath, "release-path", "", "Pending release path; restarts the daemon if this release changes Rollbridge itself")
	setPlaceholder(cmd, "release-path", "<path>")
	return cmd
}
