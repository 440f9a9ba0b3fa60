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
			return relay(cmd, configPath, control.ReadTimeout, func() []byte { return control.SortedRequest("status") })
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
			// A truthful shutdown takes as long as the slowest graceful stop:
			// the wait is bounded by the config's longest stop sequence.
			return relayStop(cmd, configPath, shutdownWait, control.SortedRequest("shutdown"))
		},
	}
	addConfigFlag(cmd, &configPath)
	return cmd
}
