package main

import (
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/spf13/cobra"
)

// hintedError keeps the first line of an error as scripts know it and
// adds lines after it that say what to do.
type hintedError struct {
	err   error
	hints []string
}

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }

// withHint adds a hint line to err.
func withHint(err error, hint string) error {
	var h *hintedError
	if errors.As(err, &h) {
		return &hintedError{err: h.err, hints: append(append([]string(nil), h.hints...), hint)}
	}
	return &hintedError{err: err, hints: []string{hint}}
}

// errorHints returns the hint lines printed after "Error: <message>".
func errorHints(cmd *cobra.Command, err error) []string {
	var hints []string
	var h *hintedError
	if errors.As(err, &h) {
		hints = h.hints
	}
	if hint := noDaemonHint(cmd, err); hint != "" {
		hints = append(hints, hint)
	}
	return hints
}

// noDaemonHint explains a connection that found no daemon: no socket file
// (none runs) or a socket nobody listens on (the daemon died). Commands
// that start or probe a daemon themselves say what they found in their
// own words.
func noDaemonHint(cmd *cobra.Command, err error) string {
	var de *control.DialError
	if cmd == nil || !errors.As(err, &de) {
		return ""
	}
	switch cmd.Name() {
	case "daemon", "ensure-daemon", "doctor", "recover", "predeploy-cleanup":
		return ""
	}
	config := "<config>"
	if c := cmd.Annotations[configAnnotation]; c != "" {
		config = shellQuote(c)
	}
	start := `"rollbridge ensure-daemon -c ` + config + `"`
	if cmd.Name() == "deploy" {
		start += ", or run this deploy again with --ensure-daemon"
	}
	switch de.Code {
	case "ENOENT":
		return "No daemon is running on this socket. Start one with " + start + "."
	case "ECONNREFUSED":
		if fi, err := os.Lstat(de.Path); err == nil && fi.Mode().Type() != fs.ModeSocket {
			return de.Path + " is not a socket: check control.path (or --socket)."
		}
		return "The daemon that created this socket is no longer running (it crashed or was killed). Start a new one, which replaces the stale socket, with " + start +
			"; \"rollbridge recover -c " + config + "\" lists the processes the old one left behind."
	}
	return ""
}

// shellQuote quotes s for a command line a person copies, when needed.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
