package main

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"time"
)

// openLoad describes an open-loop run: requests are sent on a fixed
// schedule whether or not earlier ones were answered, the way nginx keeps
// forwarding while rollbridge holds requests. A request takes an idle
// keep-alive connection from the pool or opens a new one; up to idle
// connections go back to the pool after their answer (nginx's upstream
// keepalive), the others are closed.
type openLoad struct {
	addr    string // host:port
	path    string
	rate    float64 // requests per second
	idle    int     // idle keep-alive connections kept
	timeout time.Duration
	stop    <-chan struct{}
}

// pooledConn is one keep-alive connection of the open-loop client.
type pooledConn struct {
	c      net.Conn
	br     *bufio.Reader
	dialed time.Time
}

// connPool holds idle keep-alive connections, newest last.
type connPool struct {
	mu   sync.Mutex
	idle []*pooledConn
	max  int
}

func (p *connPool) get() *pooledConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		return c
	}
	return nil
}

func (p *connPool) put(c *pooledConn) {
	p.mu.Lock()
	if len(p.idle) < p.max {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.c.Close()
	}
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.idle {
		c.c.Close()
	}
	p.idle = nil
}

// runOpenLoop sends request k at start + k/rate until stop is closed, then
// waits for every request still out. A sample's start is the scheduled
// time and its duration runs from there, so a request the generator sent
// late (a busy machine) counts its lateness too: no coordinated omission.
// A request that fails on a reused connection is not repeated.
// startOpenLoop runs runOpenLoop in the background (spec.stop is its
// own); finish stops the load and returns its result.
func startOpenLoop(spec openLoad) (finish func() loadResult) {
	stop := make(chan struct{})
	spec.stop = stop
	result := make(chan loadResult, 1)
	go func() { result <- runOpenLoop(spec) }()
	return func() loadResult {
		close(stop)
		return <-result
	}
}

func runOpenLoop(spec openLoad) loadResult {
	interval := time.Duration(float64(time.Second) / spec.rate)
	pool := &connPool{max: spec.idle}
	req := "GET " + spec.path + " HTTP/1.1\r\nHost: bench\r\n\r\n"
	var (
		mu      sync.Mutex
		samples = make([]sample, 0, 1<<14)
		wg      sync.WaitGroup
	)
	start := time.Now()
	for k := 0; ; k++ {
		at := start.Add(time.Duration(k) * interval)
		select {
		case <-spec.stop:
		case <-time.After(time.Until(at)):
		}
		select {
		case <-spec.stop:
			wg.Wait()
			pool.closeAll()
			return loadResult{samples: samples, elapsed: time.Since(start)}
		default:
		}
		wg.Add(1)
		go func(at time.Time) {
			defer wg.Done()
			dialed, sent, err := openRequest(pool, spec.addr, req, spec.timeout)
			s := sample{start: at, dur: time.Since(at), dialed: dialed, sent: sent}
			if err != nil {
				s.err = errorKind(err)
			}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}(at)
	}
}

// openRequest sends one request on a pooled or new connection and reads
// the whole answer; anything but 2xx is an error. It returns when the
// connection it used was opened and when the request went out on it
// (zero if no connection could be opened).
func openRequest(pool *connPool, addr, req string, timeout time.Duration) (dialed, sent time.Time, err error) {
	c := pool.get()
	if c == nil {
		dialed := time.Now()
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		c = &pooledConn{c: nc, br: bufio.NewReaderSize(nc, 4096), dialed: dialed}
	}
	c.c.SetDeadline(time.Now().Add(timeout))
	sent = time.Now()
	resp, err := exchange(c.c, c.br, req)
	if err != nil {
		c.c.Close()
		return c.dialed, sent, err
	}
	if resp.Close {
		c.c.Close()
	} else {
		pool.put(c)
	}
	if resp.StatusCode/100 != 2 {
		return c.dialed, sent, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return c.dialed, sent, nil
}
