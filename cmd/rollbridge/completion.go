package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"

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
			if len(args) > 1 {
				return fmt.Errorf("unexpected argument %q: %q takes one shell name.", args[1], "rollbridge completion")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var script string
			var err error
			switch args[0] {
			case "bash":
				script, err = bashCompletion(cmd.Root())
			case "zsh":
				script, err = zshCompletion(cmd.Root())
			default:
				fmt.Fprintf(stderr, "Unsupported shell \"%s\". Supported shells: bash, zsh.\n", args[0])
				return exitCode(1)
			}
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), script)
			return err
		},
	}
}

// rewrite applies edits to a script cobra generated; an edit whose text
// is missing means cobra's script changed, and the edit must be revisited.
func rewrite(script string, edits ...[2]string) (string, error) {
	for _, e := range edits {
		if !strings.Contains(script, e[0]) {
			return "", fmt.Errorf("internal error: cobra's completion script no longer contains %q", e[0])
		}
		script = strings.ReplaceAll(script, e[0], e[1])
	}
	return script, nil
}

// bashCompletion is cobra's bash script (V2, with descriptions) made to
// work without the bash-completion package, as the Node.js rollbridge's
// does: cobra's script calls that package's _get_comp_words_by_ref and
// _filedir, and a bash without it (bash --norc, minimal images) printed
// "_get_comp_words_by_ref: command not found" on every TAB. The stand-ins
// defer to the package's helpers wherever it is loaded.
func bashCompletion(root *cobra.Command) (string, error) {
	var buf bytes.Buffer
	if err := root.GenBashCompletionV2(&buf, true); err != nil {
		return "", err
	}
	return rewrite(buf.String(),
		[2]string{"_filedir", "__rollbridge_filedir"},
		[2]string{"    _get_comp_words_by_ref \"$@\" cur prev words cword\n", bashWordsFallback},
		[2]string{"\n__start_rollbridge()\n", "\n" + bashStandIns + "\n__start_rollbridge()\n"},
	)
}

const bashWordsFallback = `    if declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
        _get_comp_words_by_ref "$@" cur prev words cword
    else
        __rollbridge_split_line
    fi
`

const bashStandIns = `# Stand-ins for the bash-completion package's helpers, so that this script
# also completes in a bash without it (bash --norc, minimal images).

# __rollbridge_split_line sets words, cword, cur and prev from the line up
# to the cursor, split at unquoted blanks only: '=' and ':' stay inside
# their word, as _get_comp_words_by_ref -n =: has it.
__rollbridge_split_line()
{
    if [[ -z ${COMP_LINE+set} ]]; then
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    else
        local line=${COMP_LINE:0:COMP_POINT} word="" quote="" inword=0 c i
        words=()
        for ((i = 0; i < ${#line}; i++)); do
            c=${line:i:1}
            if [[ -n $quote ]]; then
                [[ $c == "$quote" ]] && quote=""
            elif [[ $c == [[:blank:]] ]]; then
                if ((inword)); then
                    words+=("$word")
                    word="" inword=0
                fi
                continue
            elif [[ $c == \\ ]]; then
                i=$((i + 1))
                c+=${line:i:1}
            elif [[ $c == [\"\'] ]]; then
                quote=$c
            fi
            word+=$c
            inword=1
        done
        words+=("$word")
        cword=$((${#words[@]} - 1))
    fi
    cur=${words[cword]-}
    prev=""
    if ((cword > 0)); then
        prev=${words[cword-1]}
    fi
    return 0
}

# __rollbridge_filedir is the package's _filedir where it is loaded, and
# plain file name completion where it is not: -d for directories, or an
# extension list such as "js|json|".
__rollbridge_filedir()
{
    if declare -F _filedir >/dev/null 2>&1; then
        _filedir "$@"
        return
    fi
    local IFS=$'\n'
    if [[ ${1-} == -d ]]; then
        COMPREPLY=($(compgen -d -- "$cur"))
    elif [[ -n ${1-} ]]; then
        COMPREPLY=($(compgen -d -- "$cur") $(shopt -s extglob; compgen -f -X "!*.@(${1%|})" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
    if [[ $(type -t compopt) == builtin ]]; then
        compopt -o filenames 2>/dev/null
    fi
    return 0
}
`

// zshCompletion is cobra's zsh script made to load in a zsh whose
// completion system is not started yet: cobra's registers at once with
// compdef, which exists only after compinit, so sourcing it before (or
// without) compinit printed "command not found: compdef". This one
// registers at the first prompt when compdef is missing then, by which
// time ~/.zshrc may have run compinit further down; if nothing did, it
// starts the completion system itself (compinit -i).
func zshCompletion(root *cobra.Command) (string, error) {
	var buf bytes.Buffer
	if err := root.GenZshCompletion(&buf); err != nil {
		return "", err
	}
	return rewrite(buf.String(), [2]string{"\ncompdef _rollbridge rollbridge\n", "\n" + zshRegister})
}

const zshRegister = `if (( $+functions[compdef] )); then
    compdef _rollbridge rollbridge
else
    # zsh's completion system is not started (compinit) yet: register at
    # the first prompt, starting it then if ~/.zshrc did not.
    __rollbridge_register() {
        add-zsh-hook -d precmd __rollbridge_register
        if (( ! $+functions[compdef] )); then
            autoload -Uz compinit && compinit -i
        fi
        compdef _rollbridge rollbridge
        unfunction __rollbridge_register
    }
    autoload -Uz add-zsh-hook
    add-zsh-hook precmd __rollbridge_register
fi
`
