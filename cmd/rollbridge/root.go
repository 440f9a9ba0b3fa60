package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// exitCode ends a command that already printed its outcome.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a command-line parse error, printed as "error: <text>"
// followed by the help of the command concerned
// (docs/cli.md#conventions-shared-by-every-command).
type usageError struct {
	cmd  *cobra.Command
	text string
}

func (e *usageError) Error() string { return e.text }

// run executes the CLI and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	args = moveLeadingOptions(root, args)
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
	case errors.As(err, &usage) && asksForHelp(usage.cmd, args):
		// Help wins over every other problem on the line
		// (docs/cli.md#conventions-shared-by-every-command).
		usage.cmd.SetOut(stdout)
		_ = usage.cmd.Help()
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "error: %s\n\n", usage.text)
		usage.cmd.SetOut(stderr)
		_ = usage.cmd.Help()
		return 1
	default:
		msg := err.Error()
		if isTerminal(stderr) {
			// The message may quote the daemon (a release id in "Release
			// … not found"); piped, it stays as the Node.js tool wrote it.
			msg = termLines(msg)
		}
		fmt.Fprintf(stderr, "Error: %s\n", msg)
		io.WriteString(stderr, failureDetail(err)) // a reload's changes, a failed deploy's processes
		for _, hint := range errorHints(cmd, err) {
			fmt.Fprintln(stderr, hint)
		}
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
		// Options belong to the sub-command; run moves those written before
		// it (moveLeadingOptions), and any other is an unknown option of the
		// root (docs/cli.md#conventions-shared-by-every-command).
		TraverseChildren: true,
		// The bare command prints help on stderr and fails, as in the
		// Node.js rollbridge.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			return unknownCommand(cmd, args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(stderr)
			_ = cmd.Help()
			return exitCode(1)
		},
	}
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

	// The order of the Node.js rollbridge's help (docs/cli.md#cli-reference);
	// commands of later work are added in their places as they land.
	root.AddCommand(
		newDaemonCommand(),
		newDeployCommand(),
		newRollbackCommand(),
		newEnsureDaemonCommand(),
		newStatusCommand(),
		newStopCommand(),
		newRestartCommand(stderr),
		newShutdownCommand(),
		newPauseCommand(stderr),
		newResumeCommand(),
		newMaintenanceCommand(),
		newValidateCommand(),
		newDoctorCommand(),
		newLogsCommand(),
		newEventsCommand(stderr),
		newPredeployCleanupCommand(),
		newRecoverCommand(),
		newCompletionCommand(stderr),
		newLoadConfigCommand(),
	)
	for _, c := range root.Commands() {
		c.Flags().SortFlags = false // help lists options in declaration order
		c.Flags().BoolP("help", "h", false, "display help for command")
		c.SetFlagErrorFunc(flagError)
		if c.Args == nil {
			c.Args = noStrayArgs
		}
	}
	root.Flags().BoolP("help", "h", false, "display help for command")
	return root
}

// unknownCommand is the usage error for a word that names no command,
// with commander's "did you mean".
func unknownCommand(root *cobra.Command, word string) error {
	var names []string
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() || c.Name() == "help" {
			names = append(names, c.Name())
		}
	}
	return &usageError{cmd: root, text: "unknown command '" + word + "'" + suggest(word, names)}
}

// newHelpCommand is `help [command]`; an unknown topic is an unknown
// command (the top-level help on stderr, exit 1).
func newHelpCommand(root *cobra.Command, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "display help for command",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("unexpected argument %q: %q takes at most one command name.", args[1], "rollbridge help")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return root.Help()
			}
			target := subcommand(root, args[0])
			if target == nil || !target.IsAvailableCommand() {
				if args[0] == "help" {
					return cmd.Help()
				}
				return unknownCommand(root, args[0])
			}
			return target.Help()
		},
	}
}

// argPlaceholder is the flag annotation holding a value's placeholder.
const argPlaceholder = "rollbridge-arg"

// addConfigFlag adds -c/--config, present on every command but completion.
func addConfigFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVarP(dst, "config", "c", "", "Config file path (defaults to $ROLLBRIDGE_CONFIG, then rollbridge.js)")
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

// asksForHelp reports whether -h or --help appears as an option (not as
// the value of an option that takes one) before any "--".
func asksForHelp(cmd *cobra.Command, args []string) bool {
	takesValue := func(f *pflag.Flag) bool { return f != nil && f.NoOptDefVal == "" }
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return false
		case a == "-h" || a == "--help":
			return true
		case strings.HasPrefix(a, "--") && !strings.Contains(a, "="):
			if takesValue(cmd.Flags().Lookup(a[2:])) {
				i++
			}
		case len(a) == 2 && a[0] == '-':
			if takesValue(cmd.Flags().ShorthandLookup(a[1:])) {
				i++
			}
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
		var longs []string
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden {
				longs = append(longs, "--"+f.Name)
			}
		})
		return &usageError{cmd: cmd, text: "unknown option '--" + name + "'" + suggest("--"+name, longs)}
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

// suggest returns commander's "did you mean" line for a mistyped command
// or long option: the candidates at the smallest edit distance (at most 3,
// and similar enough), or "" when none is close.
func suggest(word string, candidates []string) string {
	const maxDistance, minSimilarity = 3, 0.4
	options := strings.HasPrefix(word, "--")
	if options {
		word = word[2:]
	}
	var similar []string
	best := maxDistance
	for _, c := range candidates {
		if options {
			c = strings.TrimPrefix(c, "--")
		}
		if len(c) <= 1 {
			continue
		}
		d := editDistance(word, c)
		length := max(len(word), len(c))
		if float64(length-d)/float64(length) <= minSimilarity {
			continue
		}
		switch {
		case d < best:
			best, similar = d, []string{c}
		case d == best:
			similar = append(similar, c)
		}
	}
	sort.Strings(similar)
	if options {
		for i := range similar {
			similar[i] = "--" + similar[i]
		}
	}
	switch len(similar) {
	case 0:
		return ""
	case 1:
		return "\n(Did you mean " + similar[0] + "?)"
	}
	return "\n(Did you mean one of " + strings.Join(similar, ", ") + "?)"
}

// editDistance is the optimal-string-alignment distance (Levenshtein with
// adjacent transpositions) commander uses for its suggestions.
func editDistance(a, b string) int {
	if abs(len(a)-len(b)) > 3 {
		return max(len(a), len(b))
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for j := 1; j <= len(b); j++ {
		for i := 1; i <= len(a); i++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
