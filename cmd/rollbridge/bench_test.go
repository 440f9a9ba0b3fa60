package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
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

// BenchmarkDeployWithState measures `rollbridge deploy` of a 4-process
// release (a service, two worker replicas and the web process) into a
// daemon that persists its state, as a whole CLI round trip: config
// reload, starts, health check, switch, the state file writes. It reports
// the median wall time per deploy.
func BenchmarkDeployWithState(b *testing.B) {
	t := b
	dir := b.TempDir()
	state := filepath.Join(dir, "state.json")
	d := &testDaemon{t: t, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), pids: map[int]bool{}}
	d.writeConfig(`statePath: ` + strconv.Quote(state) + `, proxy: {port: 0, drainTimeoutMs: 1000}, processes: [
    {id: "beacon", policy: "service", command: "exec FIXTURE"},
    {id: "worker", command: "exec FIXTURE", replicas: 2},
    ` + webProcess + `]`)
	d.start()
	defer d.cleanup()
	var times []time.Duration
	n := 0
	for b.Loop() {
		n++
		id := "v" + strconv.Itoa(n)
		path := filepath.Join(dir, "releases", id)
		os.MkdirAll(path, 0o755)
		start := time.Now()
		if r := d.cli("deploy", "--release-path", path, "--release-id", id); r.code != 0 {
			b.Fatalf("deploy: %+v", r)
		}
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(times[0].Microseconds())/1000, "min-ms") // the least disturbed by other load
}
