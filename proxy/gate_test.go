package proxy

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestHoldThenRelease: requests that arrive during a hold reach the
// target only after Release, and WaitInFlight waits for the one already
// being forwarded.
func TestHoldThenRelease(t *testing.T) {
	p, addr, _ := startProxy(t)
	slow := make(chan struct{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-slow
		}
		w.Write([]byte(r.URL.Path))
	})
	p.SetActive(u.target(p, "a"))

	var wg sync.WaitGroup
	codes := make([]int, 4)
	wg.Add(1)
	go func() { defer wg.Done(); codes[0], _, _ = get(t, http.DefaultClient, "http://"+addr+"/slow", nil) }()
	waitUntil(t, func() bool { return p.InFlight() == 1 })
	p.Hold()
	for i := 1; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i], _, _ = get(t, http.DefaultClient, "http://"+addr+"/held", nil) }()
	}
	waitUntil(t, func() bool { n, _ := p.Held(); return n == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	open, err := p.WaitInFlight(ctx)
	cancel()
	if open != 1 || err == nil {
		t.Fatalf("WaitInFlight with /slow open = %d, %v", open, err)
	}
	close(slow)
	if open, err := p.WaitInFlight(context.Background()); open != 0 || err != nil {
		t.Fatalf("WaitInFlight = %d, %v", open, err)
	}
	if hits := u.hits.Load(); hits != 1 {
		t.Fatalf("held requests reached the app: %d hits", hits)
	}
	if n := p.Release(); n != 3 {
		t.Fatalf("released %d, want 3", n)
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("request %d: %d", i, c)
		}
	}
}
