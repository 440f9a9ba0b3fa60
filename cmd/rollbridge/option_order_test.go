package main

import (
	"io"
	"strings"
	"testing"
)

// Options written before the command are moved after it only when they
// all parse as that command's options; the value of an option is never
// taken for the command.
func TestMoveLeadingOptions(t *testing.T) {
	root := newRoot(io.Discard, io.Discard)
	for _, tc := range []struct{ in, want string }{
		{"-c x.js status", "status -c x.js"},
		{"-c status validate", "validate -c status"},
		{"--config=x.js --json validate", "validate --config=x.js --json"},
		{"-cx.js status --socket s", "status -cx.js --socket s"},
		{"-yc x.js stop", "stop -yc x.js"},
		{"--release-id status stop", "stop --release-id status"},
		{"-h status", "status -h"},
		{"-c x.js stop r1", "stop -c x.js r1"},
		// Left as typed, for the usual errors.
		{"-c", "-c"},
		{"-c x.js nope", "-c x.js nope"},
		{"--force status", "--force status"},
		{"-c x.js -- status", "-c x.js -- status"},
		{"-c x.js help", "-c x.js help"},
		{"-V status", "-V status"},
		{"-y status", "-y status"},
		{"-c x.js extra status", "-c x.js extra status"},
		{"status -c x.js", "status -c x.js"},
		{"", ""},
	} {
		got := strings.Join(moveLeadingOptions(root, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Every command says in one line what it does, and a required option says
// it is required.
func TestHelpDescribesEveryCommand(t *testing.T) {
	root := newRoot(io.Discard, io.Discard)
	for _, c := range root.Commands() {
		if c.Hidden {
			continue
		}
		if strings.TrimSpace(c.Short) == "" || strings.Contains(c.Short, "\n") {
			t.Errorf("%s: description %q, want one non-empty line", c.Name(), c.Short)
		}
	}
	deploy := subcommand(root, "deploy")
	if u := deploy.Flags().Lookup("release-path").Usage; !strings.HasSuffix(u, "(required)") {
		t.Errorf("deploy --release-path: %q does not say it is required", u)
	}
	r := rollbridge(t, t.TempDir(), "--help")
	for _, line := range strings.Split(r.stdout, "\n") {
		if fields := strings.Fields(line); strings.HasPrefix(line, "  ") && len(fields) == 1 {
			t.Errorf("help line without a description: %q", line)
		}
	}
}

// A stray word is refused with the option it most likely belongs to.
func TestStrayArgumentSuggestions(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"stop r1", `unexpected argument "r1"; did you mean --release-id r1?`},
		{"rollback r1", `unexpected argument "r1"; did you mean --release-id r1?`},
		{"restart worker", `unexpected argument "worker"; did you mean --process worker?`},
		{"restart service", `unexpected argument "service"; did you mean --policy service?`},
		{"logs web#1", `unexpected argument "web#1"; did you mean --process 'web#1'?`},
		{"events 20", `unexpected argument "20"; did you mean --limit 20?`},
		{"deploy ./releases/r2", `unexpected argument "./releases/r2"; did you mean --release-path ./releases/r2?`},
		{"deploy --release-path /srv/r2 r2", `unexpected argument "r2"; did you mean --release-id r2?`},
		{"doctor /srv/r2", `unexpected argument "/srv/r2"; did you mean --release-path /srv/r2?`},
		{"validate app.js", `unexpected argument "app.js"; did you mean --config app.js?`},
		{"status -c a.js b.js", `unexpected argument "b.js": "rollbridge status" takes no arguments, only options (see "rollbridge status --help").`},
		{"stop --release-id r1 r2", `unexpected argument "r2": "rollbridge stop" takes no arguments, only options (see "rollbridge stop --help").`},
		{"shutdown now", `unexpected argument "now": "rollbridge shutdown" takes no arguments, only options (see "rollbridge shutdown --help").`},
	} {
		root := newRoot(io.Discard, io.Discard)
		args := strings.Fields(tc.args)
		root.SetArgs(args)
		_, err := root.ExecuteC()
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.args, err, tc.want)
		}
	}
}
