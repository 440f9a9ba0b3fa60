package runtime

import (
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// TestStatusWhileChanging reads status continuously while the process is
// started, crashes, restarts and stops; go test -race checks the locking.
func TestStatusWhileChanging(t *testing.T) {
	spec := baseSpec(t, fixture+" -lines 5 -crash-after 20ms")
	spec.Restart.Delay = 5 * time.Millisecond
	p, rec := newProcess(t, spec, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					s := p.Status()
					if _, err := s.MarshalJSON(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	if err := p.Start(ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three crash restarts", 10*time.Second, func() bool { return p.Status().Restarts >= 3 })
	p.Stop()
	close(stop)
	wg.Wait()
	if p.State() != StateStopped || rec.count("process exited") < 3 {
		t.Fatalf("state %s events %v", p.State(), rec.messages())
	}
}

// BenchmarkMemorySample50 measures one memory sample of a 50-process group:
// listing the group from /proc and reading each member's RSS.
func BenchmarkMemorySample50(b *testing.B) {
	pidFile := filepath.Join(b.TempDir(), "pids")
	spec := Spec{ID: "group", Command: "exec " + fixture + " -grandchildren 49 -pid-file " + pidFile, Dir: b.TempDir(),
		Env: os.Environ(), StopSignal: 15, GracefulStop: 5 * time.Second, OutputLines: 10}
	p := New(spec, Options{})
	if err := p.Start(ReasonDeploy); err != nil {
		b.Fatal(err)
	}
	defer p.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the group did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	g := newGroupScanner(p.PID())
	b.ResetTimer()
	for b.Loop() {
		children, _, ok := sampleGroup(g)
		if !ok || len(children) != 50 {
			b.Fatalf("sampled %d members", len(children))
		}
	}
}

// BenchmarkSpawnToRunning measures Start until the process is running, for
// a trivial command; it reports the median.
func BenchmarkSpawnToRunning(b *testing.B) {
	dir := b.TempDir()
	var times []time.Duration
	for b.Loop() {
		p := New(Spec{ID: "t", Command: "exec sleep 10", Dir: dir, Env: os.Environ(), StopSignal: 9, GracefulStop: time.Second, OutputLines: 1}, Options{})
		start := time.Now()
		if err := p.Start(ReasonDeploy); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		b.StopTimer()
		p.Stop()
		b.StartTimer()
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds()), "median-µs")
}
