package engine

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
)

func TestEventLogRingAndLimit(t *testing.T) {
	var out bytes.Buffer
	l := newEventLog(&out)
	for i := 0; i < EventCapacity+5; i++ {
		l.log("n", jsconfig.Field{Key: "i", Value: i})
	}
	all := l.recent(0, false)
	if len(all) != EventCapacity || !strings.Contains(string(all[0]), `"data":{"i":5}`) || !strings.Contains(string(all[len(all)-1]), `"data":{"i":1004}`) {
		t.Fatalf("ring: %d entries, first %s", len(all), all[0])
	}
	for _, tc := range []struct {
		limit   float64
		limited bool
		want    int
	}{{3, true, 3}, {1.5, true, 2}, {0, true, EventCapacity}, {-1, true, EventCapacity}, {5000, true, EventCapacity}, {3, false, EventCapacity}} {
		if got := len(l.recent(tc.limit, tc.limited)); got != tc.want {
			t.Errorf("limit %v %v: %d events, want %d", tc.limit, tc.limited, got, tc.want)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != EventCapacity+5 || !strings.HasPrefix(lines[0], `{"at":"`) || !strings.HasSuffix(lines[0], `","data":{"i":0},"message":"n"}`) {
		t.Fatalf("log line %q", lines[0])
	}
	l.log("empty")
	if !strings.Contains(out.String(), `"data":{},"message":"empty"}`) {
		t.Fatal("an event without data logs {}")
	}
}

// acquire takes l without describing the operation.
func (l *opLock) acquire() error { return l.acquireAs(nil) }

func TestOpLockIsFIFOAndCloses(t *testing.T) {
	var l opLock
	if err := l.acquire(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := 1; i <= 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.acquire(); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			l.release()
		}()
		// Wait until this waiter is queued before the next one comes.
		for {
			l.mu.Lock()
			n := len(l.queue)
			l.mu.Unlock()
			if n == i {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	l.release()
	wg.Wait()
	if len(order) != 3 || order[0] != 1 || order[1] != 2 || order[2] != 3 {
		t.Fatalf("order %v", order)
	}
	if err := l.acquire(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- l.acquire() }()
	for {
		l.mu.Lock()
		n := len(l.queue)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	l.close()
	if err := <-done; !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("a queued operation at shutdown: %v", err)
	}
	if err := l.acquire(); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("a later operation: %v", err)
	}
}

func TestTimestampID(t *testing.T) {
	if got := timestampID(time.Date(2026, 11, 25, 20, 8, 19, 788e6, time.UTC)); got != "20261125200819788" {
		t.Fatal(got)
	}
}

func TestScanRangeExhaustion(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.Addr().(*net.TCPAddr).Port
	_, err = scanRange("127.0.0.1", jsconfig.PortRange{From: port, To: float64(port) + 1.5}, map[int]bool{port + 1: true}, map[int]bool{})
	want := "No available ports in range " + strconv.Itoa(port) + "-" + jsconfig.FormatNumber(float64(port)+1.5) +
		" (2.5 ports on 127.0.0.1): 1 reserved by this deploy, 1 already in use. Widen the port range, free a port, or check bind permissions."
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	_, err = scanRange("192.0.2.1", jsconfig.PortRange{From: port, To: float64(port)}, map[int]bool{}, map[int]bool{})
	if err == nil || !strings.HasSuffix(err.Error(), "0 reserved by this deploy, 0 already in use, 1 could not be bound (e.g. EADDRNOTAVAIL). Widen the port range, free a port, or check bind permissions.") {
		t.Fatalf("unbindable: %v", err)
	}
	got, err := scanRange("127.0.0.1", jsconfig.PortRange{From: port, To: float64(port) + 5}, map[int]bool{}, map[int]bool{port + 1: true})
	if err != nil || got <= port+1 {
		t.Fatalf("held ports are skipped: %d %v", got, err)
	}
}

func TestPruneReleases(t *testing.T) {
	e := New(Options{Plan: &jsconfig.Plan{}})
	now := time.Now()
	mk := func(id string, state releaseState, stoppedAgo time.Duration) *Release {
		r := newRelease(id, "/r/"+id, id)
		r.setState(state)
		if state == stateStopped {
			r.stoppedAt = now.Add(-stoppedAgo)
		}
		return r
	}
	e.releases = []*Release{mk("a", stateStopped, 5*time.Hour), mk("b", stateStopped, time.Hour), mk("c", stateStopped, 2*time.Hour), mk("d", stateDraining, 0), mk("e", stateActive, 0)}
	e.pruneReleases(jsconfig.ReleaseRetention{Keep: 2})
	var ids []string
	for _, r := range e.releases {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "b,c,d,e" {
		t.Fatalf("keep 2: %v", ids)
	}
	e.pruneReleases(jsconfig.ReleaseRetention{Keep: 10, MaxAgeMs: jsconfig.Millis((90 * time.Minute).Milliseconds())})
	ids = nil
	for _, r := range e.releases {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "b,d,e" {
		t.Fatalf("maxAge 90 min: %v", ids)
	}
}
