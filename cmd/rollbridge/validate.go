package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/spf13/cobra"
)

func newValidateCommand() *cobra.Command {
	var configPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Parse the config and report all errors without starting the daemon.",
		RunE: func(cmd *cobra.Command, args []string) error {
			// A config's console output goes where the command's output goes,
			// so console.log lands before the JSON, as with the reference.
			opts := jsconfig.Options{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
			config := chooseConfig(cmd, configPath)
			r := checkConfig(config.path, config.given, opts)
			if asJSON {
				return r.writeJSON(cmd.OutOrStdout())
			}
			return r.writeText(cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	addConfigFlag(cmd, &configPath)
	cmd.Flags().BoolVar(&asJSON, "json", false, "Output machine-readable JSON")
	return cmd
}

// validation is the outcome of `validate` (docs/cli.md#validate).
type validation struct {
	path     *string // display path; nil when no config was found
	plan     *jsconfig.Plan
	issues   []jsconfig.Issue
	notFound string // the lookup failure, printed alone
}

func checkConfig(flag string, given bool, opts jsconfig.Options) *validation {
	cwd, err := os.Getwd()
	if err != nil {
		return &validation{notFound: err.Error()}
	}
	loc, err := jsconfig.Locate(flag, given, cwd)
	if err != nil {
		return &validation{notFound: err.Error()}
	}
	v := &validation{path: &loc.Display}
	plan, issues, err := jsconfig.Check(loc.Abs, opts)
	var le *jsconfig.LoadError
	switch {
	case errors.As(err, &le):
		v.issues = []jsconfig.Issue{{Message: le.Message, Fix: jsconfig.LoadFix}}
	case err != nil:
		v.issues = []jsconfig.Issue{{Message: err.Error(), Fix: jsconfig.LoadFix}}
	case len(issues) > 0:
		v.issues = issues
	default:
		v.plan = plan
	}
	return v
}

func (v *validation) writeText(stdout, stderr io.Writer) error {
	switch {
	case v.path == nil:
		fmt.Fprintln(stderr, v.notFound)
		return exitCode(1)
	case v.plan != nil:
		n := len(v.plan.Processes)
		fmt.Fprintf(stdout, "%s is valid: %d %s, proxy on %s:%d.\n", *v.path, n, plural(n, "process", "processes"),
			v.plan.Proxy.Host, v.plan.Proxy.Port)
		return nil
	}
	n := len(v.issues)
	fmt.Fprintf(stderr, "Found %d configuration %s in %s:\n", n, plural(n, "issue", "issues"), *v.path)
	for i, is := range v.issues {
		fmt.Fprintf(stderr, "\n%d. %s\n   Fix: %s\n", i+1, is.Message, is.Fix)
	}
	return exitCode(1)
}

func (v *validation) writeJSON(stdout io.Writer) error {
	var config any // null unless valid
	issues := make([]jsconfig.Object, 0, len(v.issues))
	for _, is := range v.issues {
		issues = append(issues, jsconfig.Object{{Key: "fix", Value: is.Fix}, {Key: "message", Value: is.Message}})
	}
	if v.path == nil {
		issues = append(issues, jsconfig.Object{{Key: "fix", Value: "Pass --config or add a rollbridge.js."}, {Key: "message", Value: v.notFound}})
	}
	if v.plan != nil {
		config = jsconfig.Object{
			{Key: "application", Value: v.plan.Application},
			{Key: "processes", Value: len(v.plan.Processes)},
			{Key: "proxy", Value: jsconfig.Object{{Key: "host", Value: v.plan.Proxy.Host}, {Key: "port", Value: v.plan.Proxy.Port}}},
		}
	}
	out := jsconfig.Object{{Key: "config", Value: config}, {Key: "issues", Value: issues}, {Key: "path", Value: v.path}, {Key: "valid", Value: v.plan != nil}}
	if err := jsconfig.WriteJSON(stdout, out); err != nil {
		return err
	}
	if v.plan == nil {
		return exitCode(1)
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
