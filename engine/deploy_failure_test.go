package engine

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCutLine(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{strings.Repeat("a", 10), 10, strings.Repeat("a", 10)},
		{strings.Repeat("a", 11), 10, "aaaaaaa…"},
		{"ééééé", 8, "éé…"}, // never half a character
	} {
		got := cutLine(c.in, c.n)
		if got != c.want || len(got) > c.n || !utf8.ValidString(got) {
			t.Errorf("cutLine(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
