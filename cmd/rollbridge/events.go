package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

func newEventsCommand(stderr interface{ Write([]byte) (int, error) }) *cobra.Command {
	var configPath, socket, limit string
	var asJSON, follows bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print recent structured daemon events (deploys, switches, stops, crashes, restarts, failures).",
		RunE: func(cmd *cobra.Command, args []string) error {
			var fields []jsconfig.Field
			if cmd.Flags().Changed("limit") {
				n, ok := jsNumber(limit)
				if !ok || n < 1 || n != math.Trunc(n) || math.IsInf(n, 0) {
					fmt.Fprintln(stderr, "--limit must be a positive integer.")
					return exitCode(1)
				}
				fields = append(fields, jsconfig.Field{Key: "limit", Value: jsconfig.Number(n)})
			}
			ep, _, err := daemonTarget(cmd, configPath, socket)
			if err != nil {
				return err
			}
			if follows {
				fields = append(fields, jsconfig.Field{Key: "streams", Value: []string{"events"}})
				return follow(ep, control.SortedRequest("follow", fields...),
					&eventPrinter{out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), asJSON: asJSON, readable: isTerminal(cmd.OutOrStdout())})
			}
			raw, err := control.Call(ep, control.SortedRequest("events", fields...), control.ReadTimeout)
			if err != nil {
				return err
			}
			var reply struct {
				Events []eventEntry `json:"events"`
			}
			if err := json.Unmarshal(raw, &reply); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				list := make([]jsconfig.Object, 0, len(reply.Events))
				for _, e := range reply.Events {
					list = append(list, jsconfig.Object{{Key: "at", Value: e.At}, {Key: "data", Value: rawOrEmpty(e.Data)}, {Key: "message", Value: e.Message}})
				}
				return jsconfig.WriteJSON(out, list)
			}
			if len(reply.Events) == 0 {
				fmt.Fprintln(out, "No events recorded yet.")
				return nil
			}
			if isTerminal(out) {
				// For a person: local times, aligned messages, key=value.
				_, err := io.WriteString(out, eventsText(reply.Events, newPalette(out), time.Now()))
				return err
			}
			var b bytes.Buffer
			for _, e := range reply.Events {
				fmt.Fprintf(&b, "%s  %s", e.At, e.Message)
				var compact bytes.Buffer
				if json.Compact(&compact, e.Data) == nil && compact.Len() > 2 {
					b.WriteByte(' ')
					b.Write(compact.Bytes())
				}
				b.WriteByte('\n')
			}
			_, err = out.Write(b.Bytes())
			return err
		},
	}
	addConfigFlag(cmd, &configPath)
	addSocketFlag(cmd, &socket)
	cmd.Flags().StringVar(&limit, "limit", "", "Show only the most recent <count> events")
	cmd.Flags().BoolVar(&asJSON, "json", false, "Output machine-readable JSON")
	cmd.Flags().BoolVar(&follows, "follow", false, "Keep printing new events as they are recorded (until interrupted)")
	setPlaceholder(cmd, "limit", "<count>")
	return cmd
}

func rawOrEmpty(r json.RawMessage) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("{}")
	}
	return r
}
