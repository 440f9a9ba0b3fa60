package main

import (
	"encoding/json"
	"io"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
	"github.com/spf13/cobra"
)

// statusEventLimit is how many recent events the terminal form of status
// searches for problems worth a line.
const statusEventLimit = 200

func newStatusCommand() *cobra.Command {
	var configPath, socket string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the daemon's status: releases, processes, services and singletons.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ep, plan, err := daemonTarget(cmd, configPath, socket)
			if err != nil {
				return err
			}
			raw, err := control.Call(ep, control.SortedRequest("status"), control.ReadTimeout)
			if err != nil {
				return err
			}
			if !forPerson(cmd, asJSON) {
				return printPretty(cmd.OutOrStdout(), raw)
			}
			screen, err := statusScreen(raw, lookUpDaemon(ep, plan), plan, recentEvents(ep, statusEventLimit), time.Now(), newPalette(cmd.OutOrStdout()))
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), screen)
			return err
		},
	}
	addConfigFlag(cmd, &configPath)
	addSocketFlag(cmd, &socket)
	addJSONFlag(cmd, &asJSON)
	return cmd
}

// lookUpDaemon finds the daemon's pid (the peer of its control socket)
// and start time; what cannot be found stays zero and is not shown.
func lookUpDaemon(ep control.Endpoint, plan *jsconfig.Plan) daemonFacts {
	facts := daemonFacts{rss: runtime.GroupRSS}
	if plan != nil { // nil when --socket reached the daemon without a config
		facts.config = plan.Path
	}
	pid, err := control.DaemonPID(ep)
	if err != nil || pid <= 0 {
		return facts
	}
	facts.pid = pid
	if ticks, ok := runtime.StartTime(pid); ok {
		if at, ok := runtime.StartedAt(ticks); ok {
			facts.started = at
		}
	}
	return facts
}

// recentEvents asks for the last limit events; none when the daemon does
// not answer (status still shows the rest).
func recentEvents(ep control.Endpoint, limit int) []eventEntry {
	raw, err := control.Call(ep, control.SortedRequest("events", jsconfig.Field{Key: "limit", Value: jsconfig.Number(float64(limit))}), control.ReadTimeout)
	if err != nil {
		return nil
	}
	var reply struct {
		Events []eventEntry `json:"events"`
	}
	if json.Unmarshal(raw, &reply) != nil {
		return nil
	}
	return reply.Events
}

func newShutdownCommand() *cobra.Command {
	var configPath, socket string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "shutdown",
		Short: "Stop the daemon and everything it runs (every release, service and singleton).",
		RunE: func(cmd *cobra.Command, args []string) error {
			var summarize func(before, reply []byte) string
			if forPerson(cmd, asJSON) {
				summarize = func(before, _ []byte) string { return shutdownSummary(before) }
			}
			// A truthful shutdown takes as long as the slowest graceful stop:
			// the wait is bounded by the config's longest stop sequence.
			return relayStop(cmd, configPath, socket, shutdownWait, func() []byte { return control.SortedRequest("shutdown") }, nil, summarize)
		},
	}
	addConfigFlag(cmd, &configPath)
	addSocketFlag(cmd, &socket)
	addJSONFlag(cmd, &asJSON)
	return cmd
}
