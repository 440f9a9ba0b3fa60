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
	// holdCalm is the stretch before each deploy whose requests give the
	// load's normal latency; holdSettle is the load alone after each
	// deploy (it ends with the next deploy's calm stretch), long enough
	// for the burst of released requests to be worked off.
	holdCalm   = time.Second
	holdSettle = 5 * time.Second
	// holdSlow is the latency from which a request counts as slowed by a
	// hold: a delay a person notices.
	holdSlow = 100 * time.Millisecond
)

// span is a stretch of the run, such as one deploy's wall time.
type span struct{ begin, end time.Time }

// holdWindow is what the requests of one deploy saw: those that started
// from the deploy's start until the calm stretch before the next one.
type holdWindow struct {
	// longest is the slowest successful request among them.
	longest time.Duration
	// slowFor is how long after the deploy's exit requests still took
	// longer than the slow threshold: the start of the last such request,
	// from the exit (0: none after the exit).
	slowFor time.Duration
}

// holdFigures is what one hold run saw.
type holdFigures struct {
	requests, failed int
	// baseline is the median latency of the successful requests that
	// started in the calm stretches before the deploys.
	baseline time.Duration
	// longest is the slowest successful request of the run; added is
	// longest − baseline, what the holds cost the unluckiest client.
	longest, added time.Duration
	windows        []holdWindow
}

// computeHoldFigures sorts the samples into the calm stretch before each
// deploy and the deploy's window, which runs from its start to the next
// deploy's calm stretch (the last one to the end of the run), and derives
// the figures. A request is slowed when it took longer than slow.
func computeHoldFigures(samples []sample, deploys []span, calm, slow time.Duration) holdFigures {
	f := holdFigures{windows: make([]holdWindow, len(deploys))}
	var base []time.Duration
	for _, s := range samples {
		f.requests++
		if s.err != "" {
			f.failed++
			continue
		}
		f.longest = max(f.longest, s.dur)
		for i, d := range deploys {
			if s.start.Before(d.begin.Add(-calm)) {
				break
			}
			if s.start.Before(d.begin) {
				base = append(base, s.dur)
				break
			}
			if i+1 < len(deploys) && !s.start.Before(deploys[i+1].begin.Add(-calm)) {
				continue
			}
			w := &f.windows[i]
			w.longest = max(w.longest, s.dur)
			if s.dur > slow { // before the exit: negative, never the maximum
				w.slowFor = max(w.slowFor, s.start.Sub(d.end))
			}
			break
		}
	}
	if len(base) > 0 {
		sort.Slice(base, func(i, j int) bool { return base[i] < base[j] })
		f.baseline = base[(len(base)-1)/2]
	}
	if f.longest > 0 {
		f.added = f.longest - f.baseline
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
// count it saw, with how many polls there were and how many failed.
func (d *daemon) peakHeld(stop chan struct{}, out chan<- peak) {
	var p peak
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := d.heldRequests()
		p.polls++
		if err != nil {
			p.failed++
			if p.err == nil {
				p.err = err
			}
		}
		p.held = max(p.held, n)
		select {
		case <-stop:
			out <- p
			return
		case <-tick.C:
		}
	}
}

// peak is what peakHeld saw.
type peak struct {
	held          int
	polls, failed int
	err           error // the first failed poll's
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
	finishLoad := startOpenLoop(openLoad{addr: fmt.Sprintf("127.0.0.1:%d", d.port), path: "/", rate: holdRate,
		idle: holdIdleConns, timeout: 60 * time.Second})
	time.Sleep(holdCalm + time.Second) // a second of warm-up, then the first calm stretch
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
		// A slow answer to a poll is the machine's load, not a broken
		// guarantee; a hold that nobody saw hold anything is.
		if p.failed > 0 {
			notes = append(notes, fmt.Sprintf("hold %d: %d of %d polls of the traffic command failed, the first with: %v", i, p.failed, p.polls, p.err))
		}
		if p.held == 0 {
			notes = append(notes, fmt.Sprintf("hold %d: no request was seen held", i))
			rep.failed = true
		}
		time.Sleep(holdSettle)
	}
	res := finishLoad()
	f := computeHoldFigures(res.samples, windows, holdCalm, holdSlow)
	s := section{
		title: fmt.Sprintf("%d deploys with --hold-traffic --before-switch '%s' under load (open loop, %d requests/s, keep-alive, no client retries)",
			len(windows), holdCommand, holdRate),
		head: []string{"hold", "deploy wall time", "held requests at peak", "longest request", "added latency",
			"added beyond the command", fmt.Sprintf("requests over %d ms until", holdSlow.Milliseconds())},
	}
	maxPeak, maxSlow := 0, time.Duration(0)
	for i, w := range f.windows {
		added := w.longest - f.baseline
		s.rows = append(s.rows, []string{fmt.Sprint(i + 1), ms(walls[i]), fmt.Sprint(peaks[i]), ms(w.longest), ms(added),
			ms(added - holdCommandTime), "+" + ms(w.slowFor)})
		maxPeak, maxSlow = max(maxPeak, peaks[i]), max(maxSlow, w.slowFor)
	}
	s.rows = append(s.rows, []string{"all", ms(median(walls)) + " (median)", fmt.Sprint(maxPeak), ms(f.longest), ms(f.added),
		ms(f.added - holdCommandTime), "+" + ms(maxSlow)})
	s.notes = append(s.notes, fmt.Sprintf("%d requests, %d failed; median latency in the second before each deploy %s", f.requests, f.failed, ms(f.baseline)))
	if f.failed > 0 {
		s.notes = append(s.notes, "failures: "+res.firstErrors())
		rep.failed = true
	}
	s.notes = append(s.notes, notes...)
	rep.add(s)
}
