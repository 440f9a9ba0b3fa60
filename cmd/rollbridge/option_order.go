package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// moveLeadingOptions turns `rollbridge -c app.js status` into
// `rollbridge status -c app.js`: options written before the command are
// moved after it when every one of them is an option of that command
// (with its value, if it takes one). The first word that is a command and
// for which the words before it parse completely as its options is taken,
// so the value of an option is never mistaken for the command
// (`-c status validate` is validate with the config "status"). Anything
// else is left as typed, for the usual errors.
func moveLeadingOptions(root *cobra.Command, args []string) []string {
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") || args[0] == "-" {
		return args
	}
	for i, word := range args {
		if word == "--" {
			break
		}
		if strings.HasPrefix(word, "-") {
			continue
		}
		cmd := subcommand(root, word)
		if cmd == nil || !onlyOptionsOf(cmd.Flags(), args[:i]) {
			continue
		}
		moved := append([]string{word}, args[:i]...)
		return append(moved, args[i+1:]...)
	}
	return args
}

// subcommand is root's command called name, other than help.
func subcommand(root *cobra.Command, name string) *cobra.Command {
	for _, c := range root.Commands() {
		if c.Name() == name && c.Name() != "help" {
			return c
		}
	}
	return nil
}

// onlyOptionsOf reports whether words are options of fs, each with its
// value, and nothing else.
func onlyOptionsOf(fs *pflag.FlagSet, words []string) bool {
	takesValue := func(f *pflag.Flag) bool { return f.NoOptDefVal == "" }
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case strings.HasPrefix(w, "--") && len(w) > 2:
			name, _, attached := strings.Cut(w[2:], "=")
			f := fs.Lookup(name)
			if f == nil {
				return false
			}
			if !attached && takesValue(f) {
				if i++; i == len(words) {
					return false
				}
			}
		case strings.HasPrefix(w, "-") && len(w) > 1:
			// A cluster of shorthands (-yc path, -cpath): a shorthand that
			// takes a value takes the rest of the word, or the next word.
			for k := 1; k < len(w); k++ {
				f := fs.ShorthandLookup(w[k : k+1])
				if f == nil {
					return false
				}
				if takesValue(f) {
					if k == len(w)-1 {
						if i++; i == len(words) {
							return false
						}
					}
					break
				}
			}
		default:
			return false
		}
	}
	return true
}
