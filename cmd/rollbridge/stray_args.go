package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// noStrayArgs refuses positional arguments for a command that takes
// none. The Node.js rollbridge ignored them, so `rollbridge stop r1`
// stopped the active release instead of r1; a word that looks like the
// value of one of the command's options is offered as that option
// (docs/cli.md#conventions-shared-by-every-command). It runs after the
// options are parsed and before anything is loaded or sent.
func noStrayArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	word := args[0]
	if flag := flagForStrayArg(cmd, word); flag != "" {
		return fmt.Errorf("unexpected argument %q; did you mean %s %s?", word, flag, shellQuote(word))
	}
	return fmt.Errorf("unexpected argument %q: %q takes no arguments, only options (see %q).", word, cmd.CommandPath(), cmd.CommandPath()+" --help")
}

// flagForStrayArg names the option a stray word most likely belongs to,
// or "" when none fits. Only options the command has and the line does
// not set yet are offered.
func flagForStrayArg(cmd *cobra.Command, word string) string {
	var candidates []string
	switch {
	case strings.HasSuffix(word, ".js") || strings.HasSuffix(word, ".mjs") || strings.HasSuffix(word, ".cjs"):
		candidates = []string{"config"}
	case looksLikePath(word):
		candidates = []string{"release-path"}
	}
	switch cmd.Name() {
	case "stop", "rollback", "deploy":
		candidates = append(candidates, "release-id")
	case "restart":
		switch word {
		case "companion", "singleton", "service":
			candidates = append(candidates, "policy")
		default:
			candidates = append(candidates, "process")
		}
	case "logs":
		candidates = append(candidates, "process")
	case "events":
		if n, err := strconv.Atoi(word); err == nil && n > 0 {
			candidates = append(candidates, "limit")
		}
	}
	for _, name := range candidates {
		if f := cmd.Flags().Lookup(name); f != nil && !f.Changed {
			return "--" + name
		}
	}
	return ""
}

// looksLikePath reports whether a word reads as a file system path.
func looksLikePath(word string) bool {
	return strings.Contains(word, "/") || word == "." || word == ".." || strings.HasPrefix(word, "~")
}
