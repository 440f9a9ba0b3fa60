package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

// logSource is one process's retained output (docs/cli.md#logs).
type logSource struct {
	id     string
	logs   []json.RawMessage
	source string
}

func newLogsCommand() *cobra.Command {
	var configPath, socket, process string
	var asJSON, follows bool
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Print recent stdout/stderr captured from managed processes.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ep, _, err := daemonTarget(cmd, configPath, socket)
			if err != nil {
				return err
			}
			filtered := cmd.Flags().Changed("process")
			if follows {
				fields := []jsconfig.Field{{Key: "streams", Value: []string{"logs"}}}
				if filtered {
					fields = append(fields, jsconfig.Field{Key: "processId", Value: process})
				}
				return follow(ep, control.SortedRequest("follow", fields...),
					&logPrinter{out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), asJSON: asJSON, process: process, filtered: filtered, readable: isTerminal(cmd.OutOrStdout())})
			}
			raw, err := control.Call(ep, control.SortedRequest("status"), control.ReadTimeout)
			if err != nil {
				return err
			}
			sources, err := logSources(raw)
			if err != nil {
				return err
			}
			if filtered {
				kept := sources[:0]
				for _, s := range sources {
					if engine.SelectsProcess(process, s.id) {
						kept = append(kept, s)
					}
				}
				sources = kept
			}
			out := cmd.OutOrStdout()
			if asJSON {
				list := make([]jsconfig.Object, 0, len(sources))
				for _, s := range sources {
					list = append(list, jsconfig.Object{{Key: "id", Value: s.id}, {Key: "logs", Value: s.logs}, {Key: "source", Value: s.source}})
				}
				return jsconfig.WriteJSON(out, list)
			}
			switch {
			case len(sources) == 0 && filtered:
				fmt.Fprintf(out, "No process found with id \"%s\".\n", process)
			case len(sources) == 0:
				fmt.Fprintln(out, "No managed processes.")
			default:
				writeLogSections(out, sources, isTerminal(out))
			}
			return nil
		},
	}
	addConfigFlag(cmd, &configPath)
	addSocketFlag(cmd, &socket)
	cmd.Flags().StringVar(&process, "process", "", "Only show logs for the process with this id (all its replicas), or one instance such as worker#1")
	cmd.Flags().BoolVar(&asJSON, "json", false, "Output machine-readable JSON")
	cmd.Flags().BoolVar(&follows, "follow", false, "Keep printing new output as it arrives (until interrupted)")
	setPlaceholder(cmd, "process", "<id>")
	return cmd
}

// logSources flattens a status reply: release processes, then services,
// then singletons.
func logSources(raw []byte) ([]logSource, error) {
	type proc struct {
		ID   string            `json:"id"`
		Logs []json.RawMessage `json:"logs"`
	}
	var status struct {
		Releases []struct {
			ReleaseID string `json:"releaseId"`
			State     string `json:"state"`
			Processes []proc `json:"processes"`
		} `json:"releases"`
		Services []struct {
			ID      string `json:"id"`
			Process proc   `json:"process"`
		} `json:"services"`
		Singletons []struct {
			ID      string `json:"id"`
			Process proc   `json:"process"`
		} `json:"singletons"`
	}
	if err := json.Unmarshal(raw, &status); err != nil {
		return nil, err
	}
	var out []logSource
	for _, r := range status.Releases {
		for _, p := range r.Processes {
			out = append(out, logSource{p.ID, nonNilLogs(p.Logs), "release " + r.ReleaseID + " (" + r.State + ")"})
		}
	}
	for _, s := range status.Services {
		out = append(out, logSource{s.ID, nonNilLogs(s.Process.Logs), "service"})
	}
	for _, s := range status.Singletons {
		out = append(out, logSource{s.ID, nonNilLogs(s.Process.Logs), "singleton"})
	}
	return out, nil
}

func nonNilLogs(l []json.RawMessage) []json.RawMessage {
	if l == nil {
		return []json.RawMessage{}
	}
	return l
}

// writeLogSections prints the retained output of each source; readable
// (stdout is a terminal) shows it by the terminal rule, so a request line
// an application logged cannot carry escape sequences to the terminal.
func writeLogSections(w io.Writer, sources []logSource, readable bool) {
	var b bytes.Buffer
	for i, s := range sources {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "== %s [%s] ==\n", showText(readable, s.id), showText(readable, s.source))
		if len(s.logs) == 0 {
			b.WriteString("  (no recent output)\n")
			continue
		}
		for _, raw := range s.logs {
			var e struct{ At, Line, Stream string }
			_ = json.Unmarshal(raw, &e)
			fmt.Fprintf(&b, "  %s [%s] %s\n", showText(readable, e.At), showText(readable, e.Stream), showText(readable, e.Line))
		}
	}
	w.Write(b.Bytes())
}
