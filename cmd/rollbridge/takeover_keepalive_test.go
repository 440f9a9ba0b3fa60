package main

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// keepAliveTraffic is HTTP/1.1 keep-alive clients on raw sockets that never
// send a request twice. Go's http.Client repeats an idempotent request
// whose reused connection the server closed, which hides exactly the race
// these clients expose: every request that meets a connection the server
// closes counts as failed. A client opens a new connection only after an
// answer with Connection: close, or after a failure.
type keepAliveTraffic struct {
	*traffic
	reconnects atomic.Int64 // answers with Connection: close
}

// startKeepAliveTraffic runs conns clients against addr, each sending
// GET path every interval.
func startKeepAliveTraffic(addr, path string, conns int, interval time.Duration) *keepAliveTraffic {
	tr := &keepAliveTraffic{traffic: &traffic{done: make(chan struct{})}}
	for range conns {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			var c *keepAliveConn
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-tr.done:
					return
				case <-tick.C:
				}
				err := func() error {
					if c == nil {
						var err error
						if c, err = dialKeepAlive(addr); err != nil {
							return err
						}
					}
					code, _, closing, err := c.get(path)
					if err == nil && code != 200 {
						err = fmt.Errorf("HTTP %d", code)
					}
					if closing {
						tr.reconnects.Add(1)
						c.Close()
						c = nil
					}
					return err
				}()
				if err != nil && c != nil {
					c.Close()
					c = nil
				}
				tr.record(err)
			}
		}()
	}
	return tr
}

// Three takeovers in a row under keep-alive load from clients that never
// repeat a request: no request fails. A retiring owner answers the next
// request on each connection with Connection: close instead of closing
// idle connections under the clients' feet.
func TestTakeoversUnderKeepAliveLoad(t *testing.T) {
	owner := startDaemon(t, `processes: [`+webProcess+`]`)
	owner.deploy("v1")
	tr := startKeepAliveTraffic("127.0.0.1:"+strconv.Itoa(owner.port), "/release", 16, 20*time.Millisecond)
	defer func() {
		select {
		case <-tr.done:
		default:
			tr.stop()
		}
	}()
	tr.waitFor(t, "traffic to flow", 100)
	for i := 2; i <= 4; i++ {
		id := "v" + strconv.Itoa(i)
		cand := owner.candidate(id)
		cand.start()
		t.Cleanup(cand.cleanup)
		owner.handedOver = true
		cand.port = owner.port
		waitUntil(t, "requests to reach "+id, 10*time.Second, func() bool {
			_, body := cand.get("/release")
			return body == id
		})
		select {
		case <-owner.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("the owner retired by %s did not exit", id)
		}
		if owner.exitErr != nil {
			t.Fatalf("owner exit: %v\n%s", owner.exitErr, owner.stderr.String())
		}
		tr.waitFor(t, "traffic through "+id, 100)
		owner = cand
	}
	failures := tr.stop()
	t.Logf("%d requests, %d failed, %d answers with Connection: close", tr.ok.Load()+int64(len(failures)), len(failures), tr.reconnects.Load())
	if len(failures) != 0 {
		t.Fatalf("%d requests failed across 3 takeovers; first: %v", len(failures), failures[0].err)
	}
	if tr.reconnects.Load() == 0 {
		t.Fatal("no retiring owner asked a client to reconnect")
	}
}
