package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newCompletionCommand(stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:       "completion <shell>",
		Short:     "Print a shell completion script. Enable with: source <(rollbridge completion <shell>)",
		ValidArgs: []string{"bash", "zsh"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &usageError{cmd: cmd, text: "missing required argument 'shell'"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return cmd.Root().GenBashCompletionV2(out, true)
			case "zsh":
				return cmd.Root().GenZshCompletion(out)
			}
			fmt.Fprintf(stderr, "Unsupported shell \"%s\". Supported shells: bash, zsh.\n", args[0])
			return exitCode(1)
		},
	}
}
