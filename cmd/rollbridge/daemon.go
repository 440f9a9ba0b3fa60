package main

import (
	"github.com/rollbridge/rollbridge/engine"
	"github.com/spf13/cobra"
)

func newDaemonCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "",
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := loadPlan(cmd, configPath)
			if err != nil {
				return err
			}
			identity, err := engine.ExecutableIdentity(version)
			if err != nil {
				return err
			}
			d := engine.New(engine.Options{
				ConfigPath: plan.Path, Plan: plan, Identity: identity,
				Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
			})
			if err := d.Start(); err != nil {
				return err
			}
			return d.Run()
		},
	}
	addConfigFlag(cmd, &configPath)
	return cmd
}
