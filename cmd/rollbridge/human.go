package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The terminal forms of the commands (docs/cli.md#output-for-people-and-for-scripts):
// on a terminal, without --json, a command prints a few lines for a
// person; piped or with --json it prints the daemon's JSON exactly as
// the Node.js rollbridge does, because scripts parse it.

// addJSONFlag adds --json, which forces the JSON result on a terminal.
func addJSONFlag(cmd *cobra.Command, dst *bool) {
	cmd.Flags().BoolVar(dst, "json", false, "Output machine-readable JSON (the default when stdout is not a terminal)")
}

// forPerson reports whether the command's result goes to a person:
// stdout is a terminal and --json was not given.
func forPerson(cmd *cobra.Command, asJSON bool) bool {
	return !asJSON && isTerminal(cmd.OutOrStdout())
}

// palette colours words for a terminal that supports it; its zero value
// colours nothing. Colour only ever repeats what a word already says.
type palette struct{ on bool }

// newPalette colours only on a terminal, unless NO_COLOR is set to
// anything (no-color.org) or TERM is unset or "dumb".
func newPalette(w io.Writer) palette {
	term := os.Getenv("TERM")
	return palette{on: isTerminal(w) && os.Getenv("NO_COLOR") == "" && term != "" && term != "dumb"}
}

func (p palette) wrap(code, s string) string {
	if !p.on || s == "" {
		return s
	}
	return "\033[" + code + "m" + s + "\033[0m"
}

func (p palette) green(s string) string  { return p.wrap("32", s) }
func (p palette) yellow(s string) string { return p.wrap("33", s) }
func (p palette) red(s string) string    { return p.wrap("31", s) }
func (p palette) dim(s string) string    { return p.wrap("2", s) }
func (p palette) bold(s string) string   { return p.wrap("1", s) }

// state colours a release or process state by what it means for the
// site: green serves or runs, yellow is on its way somewhere, red needs a
// look.
func (p palette) state(s string) string {
	switch s {
	case "active", "running":
		return p.green(s)
	case "draining", "starting", "stopping":
		return p.yellow(s)
	case "failed":
		return p.red(s)
	}
	return s
}

// ago is a short, rounded duration for people: "45s", "3m 12s", "2h 5m",
// "4d 3h".
func ago(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return fmt.Sprintf("%dm %ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh %dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd %dh", s/86400, s%86400/3600)
}

// bytesIEC is a memory size for people: "41.2 MiB".
func bytesIEC(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(n, 'f', 0, 64) + " B"
	}
	return strconv.FormatFloat(n, 'f', 1, 64) + " " + units[i]
}

// counted is "1 connection", "3 connections".
func counted(n int, one, many string) string {
	return strconv.Itoa(n) + " " + plural(n, one, many)
}

// table aligns rows into columns two spaces apart. Widths count runes of
// the plain text, so a coloured cell (given as plain and shown) lines up
// like any other.
type table struct {
	rows [][]cell
}

type cell struct{ plain, shown string }

func (t *table) add(cells ...cell) { t.rows = append(t.rows, cells) }

func (t *table) write(w *strings.Builder) {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c.plain)))
		}
	}
	for _, r := range t.rows {
		var line strings.Builder
		for i, c := range r {
			line.WriteString(c.shown)
			if i < len(r)-1 {
				line.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c.plain))+2))
			}
		}
		w.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// plainCell is a cell without colour, its text made safe to print
// (termText): cells show ids, revisions and states the daemon sent.
func plainCell(s string) cell {
	s = termText(s)
	return cell{s, s}
}
