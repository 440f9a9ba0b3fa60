package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// exitCode ends a command that already printed its outcome.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a command-line parse error, printed as "error: <text>"
// followed by the help of the command concerned (cli.md §1.3).
type usageError struct {
	cmd  *cobra.Command
	text string
}

func (e *usageError) Error() string { return e.text }

// run executes the CLI and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if isFlagError(err) {
		// Errors from traversing to the sub-command skip cobra's hook.
		err = flagError(cmd, err)
	}
	var code exitCode
	var usage *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &usage) && asksForHelp(args):
		// Help wins over every other problem on the line (cli.md §1.4).
		usage.cmd.SetOut(stdout)
		_ = usage.cmd.Help()
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "error: %s\n\n", usage.text)
		usage.cmd.SetOut(stderr)
		_ = usage.cmd.Help()
		return 1
	default:
		fmt.Fprintf(stderr, "Error: %s\n", err.Error())
		return 1
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	cobra.EnableCommandSorting = false
	root := &cobra.Command{
		Use:           "rollbridge",
		Short:         "Zero-downtime process supervisor and local traffic switcher.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Options belong to the sub-command: `rollbridge -c x status` is an
		// unknown option of the root (cli.md §1.2).
		TraverseChildren: true,
		// The bare command prints help on stderr and fails (cli.md §1.4).
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			text := "unknown command '" + args[0] + "'"
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				text += "\n(Did you mean " + s[0] + "?)"
			}
			return &usageError{cmd: cmd, text: text}
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(stderr)
			_ = cmd.Help()
			return exitCode(1)
		},
	}
	root.SuggestionsMinimumDistance = 2
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("rollbridge {{.Version}}\n")
	root.Flags().BoolP("version", "V", false, "output the version number")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(flagError)
	root.SetUsageTemplate(usageTemplate)
	cobra.AddTemplateFunc("rollbridgeFlags", flagUsages)
	cobra.AddTemplateFunc("rollbridgeUseLine", useLine)
	root.SetHelpCommand(newHelpCommand(root, stderr))

	root.AddCommand(
		newValidateCommand(),
		newCompletionCommand(stderr),
	)
	for _, c := range root.Commands() {
		c.Flags().BoolP("help", "h", false, "display help for command")
		c.SetFlagErrorFunc(flagError)
		if c.Args == nil {
			c.Args = cobra.ArbitraryArgs // extra words are ignored (cli.md §1.2)
		}
	}
	root.Flags().BoolP("help", "h", false, "display help for command")
	return root
}

// newHelpCommand is `help [command]`; an unknown topic prints the
// top-level help on stderr and fails.
func newHelpCommand(root *cobra.Command, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "display help for command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if len(args) == 0 {
				return root.Help()
			}
			if err != nil || target == root || len(rest) > 0 {
				root.SetOut(stderr)
				_ = root.Help()
				return exitCode(1)
			}
			return target.Help()
		},
	}
}

// argPlaceholder is the flag annotation holding a value's placeholder.
const argPlaceholder = "rollbridge-arg"

// addConfigFlag adds -c/--config, present on every command but completion.
func addConfigFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVarP(dst, "config", "c", "", "Config file path (defaults to rollbridge.js)")
	setPlaceholder(cmd, "config", "<path>")
}

func setPlaceholder(cmd *cobra.Command, name, placeholder string) {
	_ = cmd.Flags().SetAnnotation(name, argPlaceholder, []string{placeholder})
}

// flagSpelling is how help and parser errors name a flag: "-c, --config <path>".
func flagSpelling(f *pflag.Flag) string {
	s := "--" + f.Name
	if f.Shorthand != "" {
		s = "-" + f.Shorthand + ", " + s
	}
	if p := f.Annotations[argPlaceholder]; len(p) > 0 {
		s += " " + p[0]
	}
	return s
}

func asksForHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-h" || a == "--help" {
			return true
		}
	}
	return false
}

func isFlagError(err error) bool {
	var notExist *pflag.NotExistError
	var needsValue *pflag.ValueRequiredError
	return errors.As(err, &notExist) || errors.As(err, &needsValue)
}

// flagError translates pflag's parse errors into the reference's wording.
func flagError(cmd *cobra.Command, err error) error {
	var notExist *pflag.NotExistError
	var needsValue *pflag.ValueRequiredError
	switch {
	case errors.As(err, &notExist):
		name := notExist.GetSpecifiedName()
		if notExist.GetSpecifiedShortnames() != "" {
			return &usageError{cmd: cmd, text: "unknown option '-" + name + "'"}
		}
		return &usageError{cmd: cmd, text: "unknown option '--" + name + "'"}
	case errors.As(err, &needsValue):
		return &usageError{cmd: cmd, text: "option '" + flagSpelling(needsValue.GetFlag()) + "' argument missing"}
	}
	return &usageError{cmd: cmd, text: err.Error()}
}

// flagUsages lists a command's options in declaration order.
func flagUsages(fs *pflag.FlagSet) string {
	type row struct{ spelling, usage string }
	var rows []row
	width := 0
	fs.SortFlags = false
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		r := row{flagSpelling(f), f.Usage}
		if f.Shorthand == "" {
			r.spelling = "    " + r.spelling // align long-only options
		}
		rows = append(rows, r)
		width = max(width, len(r.spelling))
	})
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, r.spelling, r.usage)
	}
	return strings.TrimRight(b.String(), "\n")
}

// useLine is commander's "rollbridge validate [options]" form.
func useLine(c *cobra.Command) string {
	line := c.CommandPath() + " [options]"
	if _, args, ok := strings.Cut(c.Use, " "); ok {
		line += " " + args
	}
	if c.HasAvailableSubCommands() {
		line += " [command]"
	}
	return line
}

const usageTemplate = `Usage:
  {{rollbridgeUseLine .}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Options:
{{rollbridgeFlags .LocalFlags}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more information about a command.{{end}}
`
