package jsconfig

import (
	"math"
	"testing"
)

func TestFormatNumber(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{0, "0"}, {math.Copysign(0, -1), "0"}, {8182, "8182"}, {-5, "-5"}, {1.5, "1.5"},
		{10000, "10000"}, {0.1, "0.1"}, {1e21, "1e+21"}, {1e20, "100000000000000000000"},
		{123456789012345680000, "123456789012345680000"}, {1.5e-7, "1.5e-7"}, {0.000001, "0.000001"},
		{-0.0000001, "-1e-7"}, {536870912, "536870912"}, {2.5e300, "2.5e+300"},
		{math.NaN(), "NaN"}, {math.Inf(1), "Infinity"}, {math.Inf(-1), "-Infinity"},
		{0.30000000000000004, "0.30000000000000004"}, {7330 + 99, "7429"},
	} {
		if got := FormatNumber(tc.in); got != tc.want {
			t.Errorf("FormatNumber(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNumberJSON(t *testing.T) {
	b, err := Number(1.25).MarshalJSON()
	if err != nil || string(b) != "1.25" {
		t.Fatalf("got %s %v", b, err)
	}
	b, _ = Number(math.NaN()).MarshalJSON()
	if string(b) != "null" {
		t.Fatalf("NaN encodes as %s, want null like JSON.stringify", b)
	}
}
