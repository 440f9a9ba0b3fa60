package main

import (
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/spf13/cobra"
)

func newStatusCommand() *cobra.Command {
	var configPath, socket string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the daemon's status: releases, processes, services and singletons.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ep, _, err := daemonTarget(cmd, configPath, socket)
			if err != nil {
				return err
			}
			raw, err := control.Call(ep, control.SortedRequest("status"), control.ReadTimeout)
			if err != nil {
				return err
			}
			return printPretty(cmd.OutOrStdout(), raw)
		},
	}
	addConfigFlag(cmd, &configPath)
	addSocketFlag(cmd, &socket)
	return cmd
}

func newShutdownCommand() *cobra.Command {
	var configPath, socket string
	cmd := &cobra.Command{
		Use:   "shutdown",
		Short: "Stop the daemon and everything it runs (every release, service and singleton).",
		RunE: func(cmd *cobra.Command, args []string) error {
			// A truthful shutdown takes as long as the slowest graceful stop:
			// the wait is bounded by the config's longest stop sequence.
			return relayStop(cmd, configPath, socket, shutdownWait, func() []byte { return control.SortedRequest("shutdown") }, nil)
		},
	}
	addConfigFlag(cmd, &configPath)
	addSocketFlag(cmd, &socket)
	return cmd
}
