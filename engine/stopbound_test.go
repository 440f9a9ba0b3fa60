package engine

import (
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
)

func TestStopBounds(t *testing.T) {
	quiet, stop := "q", "s"
	plan := &jsconfig.Plan{Processes: []jsconfig.Process{
		{ID: "web", Policy: jsconfig.PolicyProxied, GracefulStop: jsconfig.GracefulStop{Ms: 30000}},
		// 2 s quiet hook + 10 s drain + 2 s stop hook + 2 s graceful + 5 s after SIGKILL
		{ID: "worker", Policy: jsconfig.PolicyCompanion, GracefulStop: jsconfig.GracefulStop{Ms: 2000},
			Lifecycle: jsconfig.Lifecycle{QuietCommand: &quiet, StopCommand: &stop, DrainTimeoutMs: 10000}},
		{ID: "cron", Policy: jsconfig.PolicySingleton, GracefulStop: jsconfig.GracefulStop{Ms: 90000}},
	}}
	if d, ok := ReleaseStopBound(plan); !ok || d != 45*time.Second { // web: 30 + 5, + 10 margin
		t.Fatalf("release stop: %v %v", d, ok)
	}
	plan.Processes[1].GracefulStop.Ms = 20000 // worker: 20 + 10 + 20 + 20 + 5 = 75 s
	if d, ok := ReleaseStopBound(plan); !ok || d != 85*time.Second {
		t.Fatalf("release stop with hooks: %v %v", d, ok)
	}
	// The singleton counts for a shutdown, and so do the open client
	// connections (5 s): 90 + 5 + 10 + 5.
	if d, ok := ShutdownBound(plan); !ok || d != 110*time.Second {
		t.Fatalf("shutdown: %v %v", d, ok)
	}
	plan.Processes[2].GracefulStop.Indefinite = true
	if _, ok := ShutdownBound(plan); ok {
		t.Fatal("an indefinite graceful stop has no bound")
	}
	if _, ok := ReleaseStopBound(plan); !ok {
		t.Fatal("a release stop does not stop singletons")
	}
}
