package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"
)

// The hold load: an open-loop 1,000 requests per second, as nginx
// forwards them whatever rollbridge does with the earlier ones, over
// keep-alive connections (64 kept idle, like nginx's upstream keepalive).
const (
	holdRate      = 1000
	holdIdleConns = 64
	// holdCommand is the --before-switch command: a migration that takes
	// 2 s, during which every new request waits.
	holdCommand     = "sleep 2"
	holdCommandTime = 2 * time.Second
	holdMaxPause    = "30s"
	// holdMargin extends a hold's window past the deploy's reply: the
	// released requests are answered just after it.
	holdMargin = 500 * time.Millisecond
)

// span is a stretch of the run, such as one deploy's wall time.
type span struct{ begin, end time.Time }

// holdFigures is what one hold run saw, from the samples and the deploys'
// windows (each extended by a margin).
type holdFigures struct {
	requests, failed int
	// medianOutside is the median latency of the successful requests that
	// started outside every window: the load's normal latency.
	medianOutside time.Duration
	// longest is the longest successful request of the run; added is
	// longest − medianOutside, what the holds cost the unluckiest client.
	longest, added time.Duration
	// perWindow is the longest successful request that started in each
	// window.
	perWindow []time.Duration
}

// computeHoldFigures sorts the samples into the windows (extended by
// margin at their end) and the rest, and derives the figures.
func computeHoldFigures(samples []sample, windows []span, margin time.Duration) holdFigures {
	f := holdFigures{perWindow: make([]time.Duration, len(windows))}
	var outside []time.Duration
	for _, s := range samples {
		f.requests++
		if s.err != "" {
			f.failed++
			continue
		}
		if s.dur > f.longest {
			f.longest = s.dur
		}
		in := -1
		for i, w := range windows {
			if !s.start.Before(w.begin) && s.start.Before(w.end.Add(margin)) {
				in = i
				break
			}
		}
		if in < 0 {
			outside = append(outside, s.dur)
			continue
		}
		if s.dur > f.perWindow[in] {
			f.perWindow[in] = s.dur
		}
	}
	if len(outside) > 0 {
		sort.Slice(outside, func(i, j int) bool { return outside[i] < outside[j] })
		f.medianOutside = outside[(len(outside)-1)/2]
	}
	if f.longest > 0 {
		f.added = f.longest - f.medianOutside
	}
	return f
}

// heldRequests asks the daemon's control socket for the number of held
// requests (the traffic command: read-only, answered at once).
func (d *daemon) heldRequests() (int, error) {
	c, err := net.DialTimeout("unix", d.sock, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(`{"command":"traffic"}` + "\n")); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return 0, err
	}
	var r struct {
		Status  string
		Message string
		Traffic *struct {
			HeldRequests int `json:"heldRequests"`
		}
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return 0, err
	}
	if r.Status != "success" || r.Traffic == nil {
		return 0, fmt.Errorf("traffic command answered %s", line)
	}
	return r.Traffic.HeldRequests, nil
}

// peakHeld polls heldRequests until stop is closed and sends the largest
// count it saw, or the first error.
func (d *daemon) peakHeld(stop chan struct{}, out chan<- peak) {
	var p peak
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := d.heldRequests()
		if err != nil && p.err == nil {
			p.err = err
		}
		if n > p.held {
			p.held = n
		}
		select {
		case <-stop:
			out <- p
			return
		case <-tick.C:
		}
	}
}

type peak struct {
	held int
	err  error
}

// benchHold deploys with --hold-traffic --before-switch 'sleep 2' -holds
// times under an open-loop load and reports what clients saw: no failed
// request, and a delay of about the command's run time for the requests
// that arrived during a hold.
func benchHold(rep *report) {
	dir := tempDir()
	defer os.RemoveAll(dir)
	d := deployedDaemon(dir, "h0")
	defer d.shutdown()
	stop := make(chan struct{})
	resCh := make(chan loadResult)
	go func() {
		resCh <- runOpenLoop(openLoad{addr: fmt.Sprintf("127.0.0.1:%d", d.port), path: "/", rate: holdRate,
			idle: holdIdleConns, timeout: 60 * time.Second, stop: stop})
	}()
	time.Sleep(time.Second)
	var windows []span
	var walls []time.Duration
	var peaks []int
	var notes []string
	for i := 1; i <= *holds; i++ {
		pollStop, pollOut := make(chan struct{}), make(chan peak)
		go d.peakHeld(pollStop, pollOut)
		begin := time.Now()
		wall, err := d.deploy(fmt.Sprintf("h%d", i), "--hold-traffic", "--before-switch", holdCommand, "--max-pause", holdMaxPause)
		close(pollStop)
		p := <-pollOut
		if err != nil {
			first, _, _ := strings.Cut(err.Error(), "\n")
			notes = append(notes, fmt.Sprintf("deploy h%d failed: %s", i, first))
			rep.failed = true
			break
		}
		windows = append(windows, span{begin, begin.Add(wall)})
		walls = append(walls, wall)
		peaks = append(peaks, p.held)
		if p.err != nil {
			notes = append(notes, fmt.Sprintf("hold %d: the traffic command failed: %v", i, p.err))
			rep.failed = true
		} else if p.held == 0 {
			notes = append(notes, fmt.Sprintf("hold %d: no request was seen held; the deploy did not hold traffic", i))
			rep.failed = true
		}
		time.Sleep(time.Second) // the new release alone under load, outside any hold
	}
	close(stop)
	res := <-resCh
	f := computeHoldFigures(res.samples, windows, holdMargin)
	s := section{
		title: fmt.Sprintf("%d deploys with --hold-traffic --before-switch '%s' under load (open loop, %d requests/s, keep-alive, no client retries)",
			len(windows), holdCommand, holdRate),
		head: []string{"hold", "deploy wall time", "held requests at peak", "longest request", "added latency", "added beyond the command"},
	}
	for i := range windows {
		added := f.perWindow[i] - f.medianOutside
		s.rows = append(s.rows, []string{fmt.Sprint(i + 1), ms(walls[i]), fmt.Sprint(peaks[i]), ms(f.perWindow[i]), ms(added), ms(added - holdCommandTime)})
	}
	maxPeak := 0
	for _, p := range peaks {
		maxPeak = max(maxPeak, p)
	}
	s.rows = append(s.rows, []string{"all", ms(median(walls)) + " (median)", fmt.Sprint(maxPeak), ms(f.longest), ms(f.added), ms(f.added - holdCommandTime)})
	s.notes = append(s.notes, fmt.Sprintf("%d requests, %d failed; median latency outside the holds %s", f.requests, f.failed, ms(f.medianOutside)))
	if f.failed > 0 {
		s.notes = append(s.notes, "failures: "+res.firstErrors())
		rep.failed = true
	}
	s.notes = append(s.notes, notes...)
	rep.add(s)
}
