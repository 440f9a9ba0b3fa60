package main

import (
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/spf13/cobra"
)

func newStatusCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use: "status",
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := loadPlan(cmd, configPath)
			if err != nil {
				return err
			}
			raw, err := control.Call(plan.Control.Path, control.SortedRequest("status"), control.ReadTimeout)
			if err != nil {
				return err
			}
			return printPretty(cmd.OutOrStdout(), raw)
		},
	}
	addConfigFlag(cmd, &configPath)
	return cmd
}

func newShutdownCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use: "shutdown",
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := loadPlan(cmd, configPath)
			if err != nil {
				return err
			}
			// A truthful shutdown can take as long as the slowest graceful
			// stop: no read timeout.
			raw, err := control.Call(plan.Control.Path, control.SortedRequest("shutdown"), 0)
			if err != nil {
				return err
			}
			return printPretty(cmd.OutOrStdout(), raw)
		},
	}
	addConfigFlag(cmd, &configPath)
	return cmd
}
