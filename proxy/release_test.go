package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockingApp answers a request with its path once the test lets that
// path proceed, and notes the order in which requests arrived and the
// most it had open at once.
type blockingApp struct {
	*upstream
	open    atomic.Int64
	maxOpen atomic.Int64
	mu      sync.Mutex
	order   []string
	gates   map[string]chan struct{}
	stopped chan struct{}
}

func newBlockingApp(t *testing.T) *blockingApp {
	a := &blockingApp{gates: map[string]chan struct{}{}, stopped: make(chan struct{})}
	a.upstream = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n := a.open.Add(1)
		for m := a.maxOpen.Load(); n > m && !a.maxOpen.CompareAndSwap(m, n); m = a.maxOpen.Load() {
		}
		a.mu.Lock()
		a.order = append(a.order, r.URL.Path)
		a.mu.Unlock()
		select {
		case <-a.gate(r.URL.Path):
		case <-a.stopped:
		}
		a.open.Add(-1)
		io.WriteString(w, r.URL.Path)
	})
	// Unblock whatever is still open when a test fails halfway, so that
	// the app's Close does not wait for it.
	t.Cleanup(func() { close(a.stopped) })
	return a
}

func (a *blockingApp) gate(path string) chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.gates[path]
	if !ok {
		g = make(chan struct{})
		a.gates[path] = g
	}
	return g
}

// proceed lets the request for path be answered.
func (a *blockingApp) proceed(path string) { close(a.gate(path)) }

func (a *blockingApp) arrived() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.order...)
}

// queuedForRelease is the length of the release queue.
func queuedForRelease(p *Proxy) int {
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	return p.releasing.Len()
}

// holdPaths holds one request per path, each on its own connection, in
// that order.
func holdPaths(t *testing.T, p *Proxy, addr string, paths ...string) []*bufio.Reader {
	t.Helper()
	readers := make([]*bufio.Reader, len(paths))
	for i, path := range paths {
		_, readers[i] = dialHeld(t, addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		waitUntil(t, func() bool { return heldCount(p) == i+1 })
	}
	return readers
}

// holdingOneSlot is a proxy in front of a blocking app that holds new
// requests and whose releases forward one request at a time.
func holdingOneSlot(t *testing.T) (*blockingApp, *Proxy, string) {
	t.Helper()
	app := newBlockingApp(t)
	p, addr, _ := startProxy(t)
	p.releaseConcurrency = 1
	p.SetActive(app.target(p, "v1"))
	p.Hold()
	return app, p, addr
}

// releaseOneOfThree holds /0, /1 and /2, releases them and waits until
// /0 is at the app and the other two wait for their turn.
func releaseOneOfThree(t *testing.T, app *blockingApp, p *Proxy, addr string) []*bufio.Reader {
	t.Helper()
	readers := holdPaths(t, p, addr, "/0", "/1", "/2")
	p.Release()
	waitUntil(t, func() bool { return app.hits.Load() == 1 && queuedForRelease(p) == 2 })
	return readers
}

// A release forwards at most releaseConcurrency requests at a time, the
// next one when one is answered, in arrival order.
func TestReleaseForwardsAtMostTheBoundAtOnce(t *testing.T) {
	const n, bound = 12, 3
	app := newBlockingApp(t)
	p, addr, _ := startProxy(t)
	p.releaseConcurrency = bound
	p.SetActive(app.target(p, "v1"))
	var mu sync.Mutex
	var chose []string
	p.released = func(r *http.Request) { mu.Lock(); chose = append(chose, r.URL.Path); mu.Unlock() }
	p.Hold()
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fmt.Sprintf("/%d", i)
	}
	readers := holdPaths(t, p, addr, paths...)
	if got := p.Release(); got != n {
		t.Fatalf("released %d, want %d", got, n)
	}
	waitUntil(t, func() bool { return app.hits.Load() == bound && queuedForRelease(p) == n-bound })
	if open := p.InFlight(); open != n {
		t.Fatalf("in flight %d after the release, want all %d released", open, n)
	}
	for i := range n {
		app.proceed(paths[i])
		if resp, body := readAnswer(t, readers[i], false); resp.StatusCode != 200 || body != paths[i] {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		// The answer frees a slot: the next waiting request goes.
		want := min(int64(i+1+bound), n)
		waitUntil(t, func() bool { return app.hits.Load() == want })
		if open := app.open.Load(); open > bound {
			t.Fatalf("%d released requests open at the app, bound %d", open, bound)
		}
	}
	if m := app.maxOpen.Load(); m != bound {
		t.Fatalf("at most %d requests open at the app at once, want %d", m, bound)
	}
	// The first bound go together, on connections of their own, so the
	// app may see them in any order; each later one went when the one
	// before it was answered.
	got := app.arrived()
	first := append([]string(nil), got[:bound]...)
	slices.Sort(first)
	if fmt.Sprint(first) != "[/0 /1 /2]" || fmt.Sprint(got[bound:]) != fmt.Sprint(paths[bound:]) {
		t.Fatalf("the app saw %v, want arrival order", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(chose) != fmt.Sprint(paths) {
		t.Fatalf("targets chosen in the order %v, want arrival order", chose)
	}
	if open, err := p.WaitInFlight(context.Background()); open != 0 || err != nil {
		t.Fatalf("WaitInFlight = %d, %v", open, err)
	}
	if g := p.gate.Load(); g != nil {
		t.Fatalf("gate %+v once the release queue is empty, want open", g)
	}
}

// A request that arrives while released ones still wait for their turn
// queues behind them instead of overtaking them; once the queue is
// empty, requests go straight through again.
func TestRequestsAfterAReleaseQueueBehindIt(t *testing.T) {
	app, p, addr := holdingOneSlot(t)
	readers := releaseOneOfThree(t, app, p, addr)
	_, late := dialHeld(t, addr, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
	waitUntil(t, func() bool { return queuedForRelease(p) == 3 })
	if held := heldCount(p); held != 0 {
		t.Fatalf("the late request was held (%d held), want it queued behind the release", held)
	}
	readers = append(readers, late)
	want := []string{"/0", "/1", "/2", "/late"}
	for i, br := range readers {
		app.proceed(want[i])
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 200 || body != want[i] {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if got := app.arrived(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the app saw %v, want %v", got, want)
	}
	if c := p.Counters(); c.Held != 3 || c.Released != 3 {
		t.Fatalf("counters %+v: the late request was never held", c)
	}
	// The queue is empty: the gate is open again.
	waitUntil(t, func() bool { return p.gate.Load() == nil })
	app.proceed("/after")
	if code, body := send(t, addr, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n"); code != 200 || body != "/after" {
		t.Fatalf("after the release: %d %q", code, body)
	}
}

// Maintenance switched on while released requests still wait for their
// turn answers them (the app never saw them); the one already forwarded
// finishes.
func TestMaintenanceDuringAReleaseAnswersTheWaiting(t *testing.T) {
	app, p, addr := holdingOneSlot(t)
	readers := releaseOneOfThree(t, app, p, addr)
	p.SetMaintenance(&Maintenance{Message: "m", RetryAfter: 30 * time.Second})
	for i, br := range readers[1:] {
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 503 || body != "m\n" {
			t.Fatalf("waiting request %d: %d %q", i+1, resp.StatusCode, body)
		}
	}
	if open := p.InFlight(); open != 1 {
		t.Fatalf("in flight %d, want the forwarded one", open)
	}
	app.proceed("/0")
	if resp, body := readAnswer(t, readers[0], false); resp.StatusCode != 200 || body != "/0" {
		t.Fatalf("forwarded request: %d %q", resp.StatusCode, body)
	}
	if got := app.arrived(); len(got) != 1 {
		t.Fatalf("the app saw %v, want only /0", got)
	}
	if c := p.Counters(); c.Refused["maintenance"] != 2 {
		t.Fatalf("counters %+v", c)
	}
	if open, err := p.WaitInFlight(context.Background()); open != 0 || err != nil {
		t.Fatalf("WaitInFlight = %d, %v", open, err)
	}
}

// A Hold while released requests wait for their turn does not take them
// back: they go on, one slot at a time, and WaitInFlight waits for them;
// a request that arrives after the Hold is held.
func TestHoldDuringAReleaseKeepsTheReleasedGoing(t *testing.T) {
	app, p, addr := holdingOneSlot(t)
	readers := releaseOneOfThree(t, app, p, addr)
	p.Hold()
	_, brHeld := dialHeld(t, addr, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	open, err := p.WaitInFlight(ctx)
	cancel()
	if open != 3 || err == nil {
		t.Fatalf("WaitInFlight = %d, %v; want the 3 released open", open, err)
	}
	for i, br := range readers {
		app.proceed(fmt.Sprintf("/%d", i))
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 200 || body != fmt.Sprintf("/%d", i) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if open, err := p.WaitInFlight(context.Background()); open != 0 || err != nil {
		t.Fatalf("WaitInFlight = %d, %v", open, err)
	}
	if hits, held := app.hits.Load(), heldCount(p); hits != 3 || held != 1 {
		t.Fatalf("app hits %d, held %d; want 3 and the late one held", hits, held)
	}
	p.Release()
	app.proceed("/held")
	if resp, body := readAnswer(t, brHeld, false); resp.StatusCode != 200 || body != "/held" {
		t.Fatalf("held request: %d %q", resp.StatusCode, body)
	}
}

// A released request whose client leaves while it waits for its turn
// leaves the release queue, is not forwarded and is no longer counted in
// flight; the ones behind it go on.
func TestReleasedClientThatLeavesWhileWaitingForItsTurn(t *testing.T) {
	app, p, addr := holdingOneSlot(t)
	_, br0 := dialHeld(t, addr, "GET /0 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 1 })
	c1, _ := dialHeld(t, addr, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 2 })
	_, br2 := dialHeld(t, addr, "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(p) == 3 })
	p.Release()
	waitUntil(t, func() bool { return app.hits.Load() == 1 && queuedForRelease(p) == 2 })
	c1.Close()
	waitUntil(t, func() bool { return queuedForRelease(p) == 1 })
	if open := p.InFlight(); open != 2 {
		t.Fatalf("in flight %d, want 2 once the client of /1 left", open)
	}
	for i, br := range []*bufio.Reader{br0, br2} {
		app.proceed([]string{"/0", "/2"}[i])
		if resp, _ := readAnswer(t, br, false); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if got := app.arrived(); fmt.Sprint(got) != "[/0 /2]" {
		t.Fatalf("the app saw %v, want [/0 /2]", got)
	}
	if open, err := p.WaitInFlight(context.Background()); open != 0 || err != nil {
		t.Fatalf("WaitInFlight = %d, %v", open, err)
	}
}

// Pacing a release lasts at most releaseWindow: released requests that
// keep every slot without an answer (long polls, a stuck app), or an app
// slower than the bound allows for, do not stall the queue behind them.
func TestReleasePacingEndsAfterItsWindow(t *testing.T) {
	app, p, addr := holdingOneSlot(t)
	p.releaseWindow = 100 * time.Millisecond
	readers := holdPaths(t, p, addr, "/0", "/1", "/2")
	start := time.Now()
	p.Release()
	waitUntil(t, func() bool { return app.hits.Load() == 3 })
	if waited := time.Since(start); waited < p.releaseWindow {
		t.Fatalf("the rest went after %v, before the window of %v", waited, p.releaseWindow)
	}
	if open := app.open.Load(); open != 3 {
		t.Fatalf("%d open at the app, want all 3", open)
	}
	for i, br := range readers {
		path := fmt.Sprintf("/%d", i)
		app.proceed(path)
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 200 || body != path {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	waitUntil(t, func() bool { return p.gate.Load() == nil })
	p.heldMu.Lock()
	unbounded, timer := p.unbounded, p.paceTimer
	p.heldMu.Unlock()
	if unbounded || timer != nil {
		t.Fatalf("after the queue emptied: unbounded %v, timer %v; want the next release paced again", unbounded, timer)
	}
}

// The callback of a pacing timer that was stopped (its queue emptied)
// while it already waited to run does not end the pacing of a later
// release.
func TestStoppedPacingTimerDoesNotEndALaterRelease(t *testing.T) {
	app, p, addr := holdingOneSlot(t)
	p.releaseWindow = time.Hour
	readers := releaseOneOfThree(t, app, p, addr)
	p.heldMu.Lock()
	stale := p.paceGen - 1 // the generation of a timer stopped before this one
	p.heldMu.Unlock()
	p.endPacing(stale)
	p.heldMu.Lock()
	unbounded := p.unbounded
	p.heldMu.Unlock()
	if unbounded || queuedForRelease(p) != 2 || app.hits.Load() != 1 {
		t.Fatalf("a stale timer ended the pacing: unbounded %v, %d queued, app hits %d", unbounded, queuedForRelease(p), app.hits.Load())
	}
	for i, br := range readers {
		path := fmt.Sprintf("/%d", i)
		app.proceed(path)
		if resp, body := readAnswer(t, br, false); resp.StatusCode != 200 || body != path {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
}
