package main

import "testing"

func TestLoadSummary(t *testing.T) {
	for _, tc := range []struct {
		total, failed int64
		by            map[string]int64
		want          string
	}{
		{5022, 0, map[string]int64{"v2": 2542, "v1": 2480}, "5,022 requests during the v1 → v2 deploy, 0 failed; v1 answered 2,480, v2 2,542"},
		{1234567, 3, map[string]int64{"v1": 1234564}, "1,234,567 requests during the v1 → v2 deploy, 3 failed; v1 answered 1,234,564"},
		{999, 999, map[string]int64{}, "999 requests during the v1 → v2 deploy, 999 failed"},
		{1000, 0, map[string]int64{"v1": 100, "v2": 800, "v3": 100}, "1,000 requests during the v1 → v2 deploy, 0 failed; v1 answered 100, v2 800, v3 100"},
	} {
		if got := loadSummary(tc.total, tc.failed, "the v1 → v2 deploy", tc.by); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
