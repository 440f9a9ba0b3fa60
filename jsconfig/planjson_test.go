package jsconfig

import (
	"path/filepath"
	"reflect"
	"testing"
)

// A plan survives a round trip through its normalized JSON, for every
// valid golden config.
func TestUnmarshalPlanRoundTrip(t *testing.T) {
	configs, _ := filepath.Glob("../testdata/configs/*/rollbridge.*")
	configs = append(configs, "../examples/tensorbuzz.com.js", "../examples/rollbridge.cjs")
	n := 0
	for _, c := range configs {
		abs, _ := filepath.Abs(c)
		plan, issues, err := Check(abs, Options{Stdout: discard{}, Stderr: discard{}})
		if err != nil || len(issues) > 0 {
			continue
		}
		n++
		data, err := plan.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalPlan(data, abs)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if !reflect.DeepEqual(plan, back) {
			t.Errorf("%s: the plan changed in the round trip\n%+v\n%+v", c, plan, back)
		}
	}
	if n < 20 {
		t.Fatalf("only %d valid configs round-tripped", n)
	}
}
