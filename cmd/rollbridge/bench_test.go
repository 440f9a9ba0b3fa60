package main

import (
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"
)

// BenchmarkValidateProcess measures `rollbridge validate` on the TensorBuzz
// example as a whole process: start-up, load, validation and exit. It
// reports the median wall time and the largest peak RSS seen.
func BenchmarkValidateProcess(b *testing.B) {
	config, err := filepath.Abs("../../examples/tensorbuzz.com.js")
	if err != nil {
		b.Fatal(err)
	}
	var times []time.Duration
	var peakKiB int64
	for b.Loop() {
		cmd := exec.Command(binary, "validate", "-c", config)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		times = append(times, time.Since(start))
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > peakKiB {
			peakKiB = ru.Maxrss
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(peakKiB)/1024, "peak-MiB")
}
