package engine

import "testing"

func TestSelectsProcess(t *testing.T) {
	for _, tc := range []struct {
		selector, id string
		want         bool
	}{
		{"worker", "worker", true},
		{"worker", "worker#0", true},
		{"worker", "worker#12", true},
		{"worker#1", "worker#1", true},
		{"worker#1", "worker#10", false},
		{"worker#1", "worker", false},
		{"work", "worker#0", false},
		{"worker", "workers#0", false},
		{"worker", "worker#", false},
		{"worker", "worker#x", false},
		{"", "worker#0", false},
	} {
		if got := SelectsProcess(tc.selector, tc.id); got != tc.want {
			t.Errorf("SelectsProcess(%q, %q) = %v, want %v", tc.selector, tc.id, got, tc.want)
		}
	}
}
