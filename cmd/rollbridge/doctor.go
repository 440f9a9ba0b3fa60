package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

func newDoctorCommand() *cobra.Command {
	var configPath, releasePath, releaseID, revision string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the environment before starting the daemon: config, control socket, and proxy port.",
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := jsconfig.Options{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
			config := chooseConfig(cmd, configPath)
			v := checkConfig(config.path, config.given, opts)
			var checks []engine.Check
			switch {
			case v.path == nil:
				if !asJSON {
					fmt.Fprintln(cmd.ErrOrStderr(), v.notFound)
					return exitCode(1)
				}
				checks = []engine.Check{{Name: "config", Detail: v.notFound}}
			case v.plan == nil:
				n := len(v.issues)
				checks = []engine.Check{{Name: "config", Detail: fmt.Sprintf("%d %s — run \"rollbridge validate\" for details", n, plural(n, "issue", "issues"))}}
			default:
				n := len(v.plan.Processes)
				checks = []engine.Check{{Name: "config", OK: true, Detail: fmt.Sprintf("valid: %d %s, proxy on %s:%d", n, plural(n, "process", "processes"), v.plan.Proxy.Host, v.plan.Proxy.Port)}}
				var rel *engine.DoctorRelease
				if cmd.Flags().Changed("release-path") {
					rel = &engine.DoctorRelease{
						Path: releasePath, ID: releaseID, IDSet: cmd.Flags().Changed("release-id"),
						Revision: revision, RevSet: cmd.Flags().Changed("revision"), LookupEnv: os.LookupEnv,
					}
				}
				checks = append(checks, engine.Doctor(v.plan, rel)...)
			}
			return writeDoctor(cmd, checks, asJSON)
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().StringVar(&releasePath, "release-path", "", "Also pre-flight a prepared release: render its templates and check the release and working directories")
	cmd.Flags().StringVar(&releaseID, "release-id", "", "Release id used when rendering templates (defaults to --revision or the release path basename)")
	cmd.Flags().StringVar(&revision, "revision", "", "Revision used when rendering templates (defaults to --release-id)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "Output machine-readable JSON")
	setPlaceholder(cmd, "release-path", "<path>")
	setPlaceholder(cmd, "release-id", "<id>")
	setPlaceholder(cmd, "revision", "<sha>")
	return cmd
}

// writeDoctor prints the report (docs/cli.md#doctor); any failed check makes
// the exit status 1.
func writeDoctor(cmd *cobra.Command, checks []engine.Check, asJSON bool) error {
	failed, warnings := 0, 0
	for _, c := range checks {
		if !c.OK {
			failed++
		} else if c.Warning {
			warnings++
		}
	}
	if asJSON {
		out := jsconfig.Object{{Key: "checks", Value: checks}, {Key: "ok", Value: failed == 0}}
		if err := jsconfig.WriteJSON(cmd.OutOrStdout(), out); err != nil {
			return err
		}
	} else {
		for _, c := range checks {
			mark := "✓"
			switch {
			case !c.OK:
				mark = "✗"
			case c.Warning:
				mark = "!"
			}
			// A detail of several lines (a reload refusal) keeps its
			// further lines indented under the check.
			detail := strings.ReplaceAll(c.Detail, "\n", "\n  ")
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %s\n", mark, c.Name, detail)
		}
		switch {
		case failed == 0:
			// The line scripts match stays exact; warnings come after it.
			fmt.Fprint(cmd.OutOrStdout(), "\nAll checks passed.\n")
			if warnings > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%d %s, marked ! above.\n", warnings, plural(warnings, "warning", "warnings"))
			}
		default:
			fmt.Fprintf(cmd.ErrOrStderr(), "\n%d %s failed.\n", failed, plural(failed, "check", "checks"))
		}
	}
	if failed > 0 {
		return exitCode(1)
	}
	return nil
}
