//go:build soak

package main

import (
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
)

// soakDeploys is the length of the soak (SOAK_DEPLOYS overrides).
func soakDeploys() int {
	if n, err := strconv.Atoi(os.Getenv("SOAK_DEPLOYS")); err == nil && n > 20 {
		return n
	}
	return 1000
}

// footprint is the daemon's resources at one moment, measured in this
// process, where the daemon runs.
type footprint struct {
	threads    int
	rss        int64  // anonymous resident memory, reported
	held       uint64 // memory the Go runtime holds from the OS: Sys - HeapReleased
	heap       uint64
	objects    uint64
	goroutines int
	fds        int
}

func measure(t *testing.T) footprint {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	status, _ := os.ReadFile("/proc/self/status")
	var rss int64
	var threads int
	for _, line := range strings.Split(string(status), "\n") {
		// Anonymous memory: the pages of the binary that get paged in as
		// more code runs are not growth.
		if strings.HasPrefix(line, "Threads:") {
			threads, _ = strconv.Atoi(strings.Fields(line)[1])
		}
		if strings.HasPrefix(line, "RssAnon:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			rss = kb << 10
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return footprint{threads: threads, rss: rss, held: ms.Sys - ms.HeapReleased, heap: ms.HeapInuse, objects: ms.HeapObjects, goroutines: runtime.NumGoroutine(), fds: len(fds)}
}

// TestSoak deploys a thousand times into one daemon running in this test
// process and compares its memory, goroutines and open files at the end
// with what they were after the first ten deploys.
func TestSoak(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "rollbridge.js")
	os.WriteFile(config, []byte(appConfig(dir, `proxy: {port: 0, drainTimeoutMs: 1000}, processes: [
    {id: "worker", command: "exec FIXTURE"},
    {id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: 20000, to: 20999}, health: {intervalMs: 5}}
  ]`)), 0o644)
	// As in the real daemon, configs load in a child process.
	load := func() (*jsconfig.Plan, error) { return engine.LoadConfigWith(binary, config, io.Discard) }
	plan, err := load()
	if err != nil {
		t.Fatal(err)
	}
	d := engine.New(engine.Options{ConfigPath: config, Plan: plan, LoadConfig: load, Stdout: io.Discard, Stderr: io.Discard,
		Identity: engine.Identity{Digest: strings.Repeat("0", 64), Format: 1, Path: dir, Version: "soak"}})
	served := make(chan error, 1)
	go func() { served <- d.Serve() }()
	sock := control.Endpoint{Path: filepath.Join(dir, "rb.sock")}
	waitUntil(t, "the daemon to answer", 10*time.Second, func() bool {
		_, err := control.Call(sock, control.SortedRequest("status"), time.Second)
		return err == nil
	})
	// settled waits until only the active release holds processes.
	settled := func() {
		waitUntil(t, "the previous release to stop", 30*time.Second, func() bool {
			raw, err := control.Call(sock, control.SortedRequest("status"), 5*time.Second)
			return err == nil && strings.Count(string(raw), `"state":"draining"`) == 0
		})
	}
	deploy := func(i int) {
		rel := filepath.Join(dir, "releases", strconv.Itoa(i))
		os.MkdirAll(rel, 0o755)
		req := control.SortedRequest("deploy", jsconfig.Field{Key: "releaseId", Value: "r" + strconv.Itoa(i)}, jsconfig.Field{Key: "releasePath", Value: rel})
		if _, err := control.Call(sock, req, 0); err != nil {
			t.Fatalf("deploy %d: %v", i, err)
		}
		os.RemoveAll(filepath.Join(dir, "releases", strconv.Itoa(i-12)))
	}
	n := soakDeploys()
	for i := 1; i <= 10; i++ {
		deploy(i)
	}
	settled()
	early := measure(t)
	start := time.Now()
	for i := 11; i <= n; i++ {
		deploy(i)
		if os.Getenv("SOAK_TRACE") != "" && i%100 == 0 {
			settled()
			f := measure(t)
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			t.Logf("after %d: anonymous RSS %.2f MiB, heap %.2f MiB; sys %.2f heapSys %.2f released %.2f stack %.2f mspan %.2f gc %.2f other %.2f", i, float64(f.rss)/(1<<20), float64(f.heap)/(1<<20),
				mib(ms.Sys), mib(ms.HeapSys), mib(ms.HeapReleased), mib(ms.StackSys), mib(ms.MSpanSys), mib(ms.GCSys), mib(ms.OtherSys))
		}
	}
	settled()
	// Goroutines of the last exchanges (a status call, a sweep timer) end
	// on their own; a leak does not.
	var late footprint
	waitUntil(t, "the goroutine count to settle", 10*time.Second, func() bool {
		late = measure(t)
		return float64(late.goroutines) <= 1.1*float64(early.goroutines)
	})
	t.Logf("%d deploys in %v; after 10: anonymous RSS %.1f MiB (heap %.1f MiB, %d objects), %d goroutines, %d threads, %d fds; after %d: anonymous RSS %.1f MiB (heap %.1f MiB, %d objects), %d goroutines, %d threads, %d fds",
		n, time.Since(start).Round(time.Second), float64(early.rss)/(1<<20), float64(early.heap)/(1<<20), early.objects, early.goroutines, early.threads, early.fds,
		n, float64(late.rss)/(1<<20), float64(late.heap)/(1<<20), late.objects, late.goroutines, late.threads, late.fds)
	// The judge is the memory the runtime holds. Anonymous RSS also rises
	// while the runtime first touches pages it reserved long before (its
	// reservation, Sys, stays flat); a leak would show in what it holds.
	t.Logf("memory held by the runtime: %.2f MiB after 10, %.2f MiB after %d", mib(early.held), mib(late.held), n)
	if float64(late.held) > 1.1*float64(early.held) {
		t.Errorf("the memory held grew from %d to %d bytes", early.held, late.held)
	}
	if late.fds > early.fds {
		t.Errorf("file descriptors grew from %d to %d", early.fds, late.fds)
	}
	if _, err := control.Call(sock, control.SortedRequest("shutdown"), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop")
	}
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }
