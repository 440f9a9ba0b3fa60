package main

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The one rule for text that reaches a terminal from elsewhere — the
// daemon, the network, an application, a file another user can write
// (docs/cli.md#output-for-people-and-for-scripts): a string whose runes
// are all printable is shown as it is; any other is shown quoted, with Go
// escapes (strconv.Quote), so an ESC, a bell, a carriage return, a C1
// control or a bidirectional override can neither retitle, clear or
// recolour the terminal, nor write to its clipboard, nor reorder what is
// shown. Our own colours are added after the text was made safe.

// printable reports whether s is valid UTF-8 of printable runes only:
// letters, marks, numbers, punctuation, symbols and the ASCII space. Tabs,
// newlines, control and format characters (the bidi overrides among
// them) are not.
func printable(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return false // a byte that is not UTF-8
			}
		} else if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// termText is s made safe to print: unchanged when printable, quoted
// with escapes otherwise.
func termText(s string) string {
	if printable(s) {
		return s
	}
	return strconv.Quote(s)
}

// showText is termText on a terminal (readable) and s itself otherwise,
// for the text forms whose piped output must stay as it was.
func showText(readable bool, s string) string {
	if readable {
		return termText(s)
	}
	return s
}

// termLines is termText for a message of several lines (an error with
// its hints): each line on its own, so the message keeps its shape.
func termLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = termText(l)
	}
	return strings.Join(lines, "\n")
}

// termJSON is compact JSON made safe to print: a rune that is not
// printable (it can only be inside a string) is written as a \u escape,
// so the text stays the same JSON.
func termJSON(s string) string {
	if printable(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`) // a byte that is not UTF-8, or U+FFFD itself
		case unicode.IsPrint(r):
			b.WriteRune(r)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}
