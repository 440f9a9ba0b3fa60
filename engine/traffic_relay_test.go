package engine

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/proxy"
)

// retiringEngine is an engine whose proxy serves on loopback with an
// active target that must not be reached any more, and a stand-in
// successor on another loopback port.
func retiringEngine(t *testing.T) (e *Engine, addr string, successor *net.TCPAddr) {
	t.Helper()
	e = New(Options{Plan: &jsconfig.Plan{}})
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "old release") }))
	t.Cleanup(old.Close)
	next := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "successor") }))
	t.Cleanup(next.Close)
	oa := old.Listener.Addr().(*net.TCPAddr)
	e.proxy.SetActive(proxy.NewTarget("v1", "127.0.0.1", oa.Port, e.proxy))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.proxy.Serve(ln)
	t.Cleanup(func() { e.proxy.Shutdown(0) })
	return e, ln.Addr().String(), next.Listener.Addr().(*net.TCPAddr)
}

// getAsync sends GET / to addr and delivers the body (or the error).
func getAsync(addr string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		c := &http.Client{Timeout: 30 * time.Second}
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			ch <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- string(b)
	}()
	return ch
}

func waitHeld(t *testing.T, e *Engine, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if held, _ := e.proxy.Held(); held == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never %d held requests", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A retiring owner whose deploy held traffic passes the held requests on
// to the successor (the deploy's hold is not carried over: it is lifted
// here), and an unspecified listening address is reached on loopback.
func TestRetiredOwnerPassesADeploysHeldRequestsOn(t *testing.T) {
	e, addr, successor := retiringEngine(t)
	if _, err := e.holdForDeploy("v2", time.Minute); err != nil {
		t.Fatal(err)
	}
	got := getAsync(addr)
	waitHeld(t, e, 1)
	wait := e.passHeldOn(&net.TCPAddr{IP: net.IPv4zero, Port: successor.Port})
	if wait != 0 {
		t.Fatalf("a deploy's hold keeps requests open for %v", wait)
	}
	select {
	case body := <-got:
		if body != "successor" {
			t.Fatalf("the held request got %q", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held request was not passed on")
	}
	e.mu.Lock()
	hold := e.traffic.deployHold
	e.mu.Unlock()
	if hold != nil {
		t.Fatalf("the deploy's hold of %s is still on", hold.releaseID)
	}
	if body := <-getAsync(addr); body != "successor" {
		t.Fatalf("a later request on the retired owner got %q", body)
	}
}

// A paused owner passes its held requests on and keeps them open until
// the pause's deadline at the successor; its own expiry timer is off.
func TestRetiredOwnerPassesAPausesHeldRequestsOn(t *testing.T) {
	e, addr, successor := retiringEngine(t)
	e.pauseTraffic(time.Hour)
	got := getAsync(addr)
	waitHeld(t, e, 1)
	wait := e.passHeldOn(successor)
	if wait < time.Hour || wait > time.Hour+relayGrace {
		t.Fatalf("relayed requests kept open for %v", wait)
	}
	if body := <-got; body != "successor" {
		t.Fatalf("the held request got %q", body)
	}
	if obj := e.trafficObject(false); obj != nil {
		t.Fatalf("the retired owner's traffic state %v", obj)
	}
}

// In maintenance or after a pause expired nothing is held: the retired
// owner answers as the successor does and passes nothing on.
func TestRetiredOwnerInMaintenancePassesNothingOn(t *testing.T) {
	e, addr, successor := retiringEngine(t)
	e.setMaintenance(&maintenanceState{since: time.Now(), message: "down", retryAfter: time.Minute})
	if wait := e.passHeldOn(successor); wait != 0 {
		t.Fatalf("wait %v", wait)
	}
	if body := <-getAsync(addr); body != "down\n" {
		t.Fatalf("a request in maintenance got %q", body)
	}
}
