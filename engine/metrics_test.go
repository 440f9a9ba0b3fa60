package engine

import (
	"bytes"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The hand-written exposition parses with the official text parser, also
// with awkward label values, and histograms are cumulative.
func TestExpositionFormat(t *testing.T) {
	c := newCounterVec("process", "reason")
	c.inc(`we"ird\id`+"\n", "crash")
	c.inc(`we"ird\id`+"\n", "crash")
	h := newHistogramVec([]float64{0.1, 1}, "result")
	for _, v := range []float64{0.05, 0.5, 0.5, 7} {
		h.observe(v, "success")
	}
	var b bytes.Buffer
	family(&b, "x_total", "counter", "A help text with a \\ backslash\nand a newline.")
	c.write(&b, "x_total")
	family(&b, "y_seconds", "histogram", "Durations.")
	h.write(&b, "y_seconds")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	x := families["x_total"].Metric[0]
	if x.Counter.GetValue() != 2 || x.Label[0].GetValue() != `we"ird\id`+"\n" {
		t.Fatalf("counter %v", x)
	}
	y := families["y_seconds"].Metric[0].Histogram
	if y.GetSampleCount() != 4 || y.GetSampleSum() != 8.05 {
		t.Fatalf("histogram count %d sum %v", y.GetSampleCount(), y.GetSampleSum())
	}
	want := []uint64{1, 3, 4}
	for i, bucket := range y.Bucket {
		if bucket.GetCumulativeCount() != want[i] {
			t.Fatalf("bucket %v: %d, want %d", bucket.GetUpperBound(), bucket.GetCumulativeCount(), want[i])
		}
	}
}
