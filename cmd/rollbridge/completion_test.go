package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCompletion checks the completion command and drives the scripts in
// real shells: the bash script in a bare bash (no bash-completion package)
// always, and again with bash-completion loaded when it is installed;
// the zsh script when zsh is installed.
//
// ROLLBRIDGE_TEST_BASH_COMPLETION names a bash_completion file to use
// instead of the system's (e.g. from `apt-get download bash-completion`
// unpacked with `dpkg -x`); ROLLBRIDGE_TEST_ZSH names a zsh to use.
func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	bash := rollbridge(t, dir, "completion", "bash")
	if bash.code != 0 || bash.stderr != "" || !strings.Contains(bash.stdout, "__start_rollbridge") {
		t.Fatalf("completion bash: code %d stderr %q", bash.code, bash.stderr)
	}
	zsh := rollbridge(t, dir, "completion", "zsh")
	if zsh.code != 0 || !strings.HasPrefix(zsh.stdout, "#compdef rollbridge\n") {
		t.Fatalf("completion zsh: code %d", zsh.code)
	}
	for _, shell := range []string{"fish", "powershell", `a"b`} {
		r := rollbridge(t, dir, "completion", shell)
		if r.code != 1 || r.stdout != "" || r.stderr != `Unsupported shell "`+shell+`". Supported shells: bash, zsh.`+"\n" {
			t.Errorf("completion %s: %+v", shell, r)
		}
	}
	// A second word is refused, as stray words are by every command.
	if r := rollbridge(t, dir, "completion", "bash", "extra"); r.code != 1 || r.stdout != "" ||
		r.stderr != "Error: unexpected argument \"extra\": \"rollbridge completion\" takes one shell name.\n" {
		t.Errorf("completion bash extra: %+v", r)
	}

	bashScript := filepath.Join(dir, "completion.bash")
	zshScript := filepath.Join(dir, "completion.zsh")
	if err := os.WriteFile(bashScript, []byte(bash.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(zshScript, []byte(zsh.stdout), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("bare bash", func(t *testing.T) { checkBashCompletion(t, bashScript, "") })
	bashCompletion := os.Getenv("ROLLBRIDGE_TEST_BASH_COMPLETION")
	if bashCompletion == "" {
		bashCompletion = "/usr/share/bash-completion/bash_completion"
	}
	if _, err := os.Stat(bashCompletion); err == nil {
		t.Run("bash with bash-completion", func(t *testing.T) { checkBashCompletion(t, bashScript, bashCompletion) })
	} else {
		t.Logf("bash-completion is not installed (%v): the bash script was checked in a bare bash only", err)
	}

	zshBin := os.Getenv("ROLLBRIDGE_TEST_ZSH")
	if zshBin == "" {
		zshBin, _ = exec.LookPath("zsh")
	}
	if zshBin != "" {
		t.Run("zsh", func(t *testing.T) { checkZshCompletion(t, zshBin, zshScript) })
	} else {
		t.Log("zsh is not installed: the zsh script was not run")
	}
}

// checkBashCompletion sources the script in `bash --norc --noprofile`,
// after bashCompletion (the package's main file) unless it is "", and
// asks for candidates as bash does on TAB: COMP_WORDS, COMP_CWORD,
// COMP_LINE and COMP_POINT set, then the completion function called.
func checkBashCompletion(t *testing.T, script, bashCompletion string) {
	prelude := ""
	if bashCompletion != "" {
		prelude = `source "$BASH_COMPLETION_FILE" || exit 9; declare -F _get_comp_words_by_ref >/dev/null || exit 8; `
	}
	run := func(body string, words ...string) []string {
		t.Helper()
		cmd := exec.Command("bash", append([]string{"--norc", "--noprofile", "-c", prelude + `source "$1" || exit 7; shift; ` + body, "bash", script}, words...)...)
		cmd.Dir = filepath.Dir(script)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), "BASH_COMPLETION_FILE="+bashCompletion)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("bash completion of %q: %v\n%s%s", words, err, stdout.String(), stderr.String())
		}
		// Outside a real TAB, bash's compopt says it is not completing;
		// anything else on stderr (such as "command not found") is a defect.
		for _, line := range strings.Split(stderr.String(), "\n") {
			if line != "" && !strings.Contains(line, "compopt: not currently executing completion function") {
				t.Errorf("bash completion of %q wrote to stderr: %s", words, line)
			}
		}
		return strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	}
	complete := func(words ...string) []string {
		t.Helper()
		return run(`COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; __start_rollbridge; printf '%s\n' "${COMPREPLY[@]}"`, words...)
	}

	if got := complete("rollbridge", "val"); !slices.Equal(got, []string{"validate"}) {
		t.Errorf("command completion of val: %q", got)
	}
	all := complete("rollbridge", "")
	var names []string
	for _, c := range all {
		if f := strings.Fields(c); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	for _, c := range []string{"daemon", "deploy", "rollback", "ensure-daemon", "status", "stop", "restart", "shutdown", "validate", "doctor", "logs", "events", "predeploy-cleanup", "recover", "completion", "pause", "resume", "maintenance"} {
		if !slices.Contains(names, c) {
			t.Errorf("command %s is not completed: %q", c, all)
		}
	}
	if slices.Contains(names, "__load-config") {
		t.Errorf("a hidden command is completed: %q", all)
	}
	for cmd, opts := range map[string][]string{
		"validate":          {"--config", "--json"},
		"recover":           {"--config", "--force"},
		"doctor":            {"--config", "--release-path", "--release-id", "--revision", "--json"},
		"predeploy-cleanup": {"--config", "--release-path"},
		"pause":             {"--config", "--socket", "--max-pause", "--drain-timeout", "--json"},
		"resume":            {"--config", "--socket", "--json"},
		"maintenance":       {"--config", "--socket", "--message", "--retry-after", "--json"},
	} {
		got := strings.Join(complete("rollbridge", cmd, "--"), "\n")
		for _, o := range opts {
			if !strings.Contains(got, o) {
				t.Errorf("%s: option %s is not completed: %q", cmd, o, got)
			}
		}
	}
	// Values: --policy's, with the value as the next word and after '='
	// (which bash itself splits into words of their own).
	if got := strings.Join(complete("rollbridge", "restart", "--policy", ""), " "); !strings.Contains(got, "companion") || !strings.Contains(got, "singleton") || !strings.Contains(got, "service") {
		t.Errorf("--policy values: %q", got)
	}
	if got := run(`COMP_WORDS=(rollbridge restart --policy = sin); COMP_CWORD=4; COMP_LINE="rollbridge restart --policy=sin"; COMP_POINT=${#COMP_LINE}; __start_rollbridge; printf '%s\n' "${COMPREPLY[@]}"`); !slices.Equal(got, []string{"singleton"}) {
		t.Errorf("--policy=sin: %q", got)
	}
	if got := strings.Join(complete("rollbridge", "completion", ""), " "); !strings.Contains(got, "bash") || !strings.Contains(got, "zsh") {
		t.Errorf("shell completion: %q", got)
	}
	if got := complete("rollbridge", "maintenance", ""); !slices.Equal(got, []string{"on", "off"}) {
		t.Errorf("maintenance on|off: %q", got)
	}
	// File names after an option that takes one: bash's default completion,
	// which the script keeps on when the program offers nothing.
	if got := run(`complete -p rollbridge`); !slices.Equal(got, []string{"complete -o default -F __start_rollbridge rollbridge"}) {
		t.Errorf("registration: %q", got)
	}
	// The stand-in for bash-completion's _filedir (or _filedir itself).
	files := t.TempDir()
	if err := os.Mkdir(filepath.Join(files, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"a.js", "b.txt", "sub/c.js"} {
		writeFile(t, filepath.Join(files, f), "")
	}
	if got := run(`cd "$1" && cur="" && __rollbridge_filedir -d && printf '%s\n' "${COMPREPLY[@]}"`, files); !slices.Equal(got, []string{"sub"}) {
		t.Errorf("directories: %q", got)
	}
	if got := run(`cd "$1" && cur="" && __rollbridge_filedir 'js|' && printf '%s\n' "${COMPREPLY[@]}" | sort`, files); !slices.Contains(got, "a.js") || slices.Contains(got, "b.txt") {
		t.Errorf("files by extension: %q", got)
	}
}

// checkZshCompletion loads the script in `zsh -f` (no startup files) with
// zsh's completion system started before it, after it, and not at all;
// each time the completion function must end up registered for rollbridge
// without a word on stderr. (Completing needs an interactive line editor;
// these runs check the registration that makes TAB reach _rollbridge.)
func checkZshCompletion(t *testing.T, zshBin, script string) {
	run := func(body string) string {
		t.Helper()
		cmd := exec.Command(zshBin, "-f", "-c", body, "zsh", script)
		cmd.Env = append(os.Environ(), "ZDOTDIR="+t.TempDir(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"))
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("zsh %q: %v\nstdout: %s\nstderr: %s", body, err, stdout.String(), stderr.String())
		}
		return strings.TrimSpace(stdout.String())
	}
	if got := run(`autoload -U compinit && compinit -u -D; source "$1"; print -r -- $_comps[rollbridge]`); got != "_rollbridge" {
		t.Errorf("compinit, then the script: %q", got)
	}
	// Without compinit: nothing at load; the first prompt's precmd hook
	// starts the completion system and registers.
	if got := run(`source "$1"; print -r -- $+functions[compdef] $precmd_functions; for f in $precmd_functions; $f; print -r -- $_comps[rollbridge] $#precmd_functions $+functions[__rollbridge_register]`); got != "0 __rollbridge_register\n_rollbridge 0 0" {
		t.Errorf("the script without compinit, then the first prompt: %q", got)
	}
	// compinit further down ~/.zshrc than the script: registered at the first prompt.
	if got := run(`source "$1"; autoload -U compinit && compinit -u -D; for f in $precmd_functions; $f; print -r -- $_comps[rollbridge]`); got != "_rollbridge" {
		t.Errorf("the script, then compinit: %q", got)
	}
}
