package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge/engine"
	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress shows what a deploy, rollback or restart is doing, live, on a
// terminal: the daemon's events, and the health check's elapsed time.
// Nothing is shown when stderr is not a terminal, and stdout keeps only
// the command's JSON result.
type progress struct {
	w    io.Writer
	web  string // the proxied process, whose start begins the health check
	conn net.Conn
	done chan struct{}
	plan *jsconfig.Plan

	mu        sync.Mutex
	waiting   time.Time // the health check began; zero when not waiting
	drawn     bool      // the waiting line is on screen, to be overwritten
	lastEvent time.Time
	own       ownOperation // which events are this command's (progress_own.go)
	cut       bool         // interrupted with Ctrl-C: nothing more is shown
	stopOnce  sync.Once
}

// stop ends the event stream and the redrawing.
func (p *progress) stop() {
	p.stopOnce.Do(func() {
		close(p.done)
		p.conn.Close()
	})
}

// settle is how long the stream must stay quiet after the reply before
// progress ends: the command's last events were recorded before its
// reply, but travel on another connection.
const settle = 150 * time.Millisecond

// startProgress subscribes to the daemon's events before the command is
// sent, so none of its steps is missed. It returns nil (nothing to show)
// unless stderr is a terminal, or when the daemon cannot stream events.
func startProgress(stderr io.Writer, plan *jsconfig.Plan) *progress {
	if !isTerminal(stderr) {
		return nil
	}
	conn, err := control.Dial(engine.ControlEndpoint(plan.Control))
	if err != nil {
		return nil
	}
	conn.SetReadDeadline(time.Now().Add(control.ReadTimeout))
	req := control.SortedRequest("follow", jsconfig.Field{Key: "limit", Value: 1}, jsconfig.Field{Key: "streams", Value: []string{"events"}})
	if _, err := conn.Write(append(req, '\n')); err != nil {
		conn.Close()
		return nil
	}
	r := bufio.NewReader(conn)
	if _, err := control.ReadResponse(r, plan.Control.Path); err != nil {
		conn.Close() // e.g. a daemon without follow: no progress, no error
		return nil
	}
	for { // skip the replay: only what happens from now on is shown
		line, err := r.ReadBytes('\n')
		if err != nil {
			conn.Close()
			return nil
		}
		var e streamEntry
		if json.Unmarshal(line, &e) == nil && e.Type == "live" {
			break
		}
	}
	conn.SetReadDeadline(time.Time{})
	p := &progress{w: stderr, conn: conn, done: make(chan struct{}), plan: plan}
	if web := plan.ProxiedProcess(); web != nil && web.Health != nil {
		p.web = web.ID // its start begins a health check
	}
	go p.read(r)
	go p.tick()
	return p
}

func (p *progress) read(r *bufio.Reader) {
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var e streamEntry
		if json.Unmarshal(line, &e) == nil && e.Type == "event" {
			p.offer(e)
		}
	}
}

// tick redraws the health-check line with its elapsed time.
func (p *progress) tick() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.mu.Lock()
			if line := p.own.waitingLine(); line != "" {
				fmt.Fprintf(p.w, "\r\033[K  %s", line)
				p.drawn = true
			} else if !p.waiting.IsZero() {
				fmt.Fprintf(p.w, "\r\033[K  waiting for %s's health check… %.1f s", termText(p.web), time.Since(p.waiting).Seconds())
				p.drawn = true
			}
			p.mu.Unlock()
		}
	}
}

// say prints a line, replacing the waiting line when it is drawn. Its
// string arguments come from the daemon's events and are printed by the
// terminal rule (termText).
func (p *progress) sayLocked(format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = termText(s)
		}
	}
	if p.drawn {
		io.WriteString(p.w, "\r\033[K")
		p.drawn = false
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// eventLocked shows one event of this command's operation.
func (p *progress) eventLocked(e streamEntry, d map[string]any) {
	str := func(k string) string { s, _ := d[k].(string); return s }
	num := func(k string) string {
		if f, ok := d[k].(float64); ok {
			return fmt.Sprint(int64(f))
		}
		return "?"
	}
	p.lastEvent = time.Now()
	endWait := func() time.Duration {
		if p.waiting.IsZero() {
			return 0
		}
		took := time.Since(p.waiting)
		p.waiting = time.Time{}
		return took
	}
	switch e.Message {
	case "deploy starting":
		p.sayLocked("→ deploying %s (%s)", str("releaseId"), str("releasePath"))
	case "rollback starting":
		p.sayLocked("→ rolling back to %s", str("releaseId"))
	case "process restart requested":
		p.sayLocked("  restarting %s…", str("processId"))
	case "process started":
		switch str("reason") {
		case "deploy":
			p.sayLocked("  started %s (pid %s)", str("processId"), num("pid"))
			if p.web != "" && str("processId") == p.web {
				p.waiting = time.Now()
			}
		case "manual":
			p.sayLocked("  %s running again (pid %s)", str("processId"), num("pid"))
		}
	case "traffic switched":
		if took := endWait(); took > 0 {
			p.sayLocked("  health check passed after %.1f s", took.Seconds())
		}
		p.sayLocked("✓ traffic switched to %s", str("releaseId"))
	case "traffic paused":
		if str("by") == "deploy" { // deploy --hold-traffic
			if took := endWait(); took > 0 {
				p.sayLocked("  health check passed after %.1f s", took.Seconds())
			}
			ms, _ := d["maxPauseMs"].(float64)
			// Not "at most": a --before-switch command still running at
			// --max-pause is stopped first, which takes up to 6 s more.
			p.sayLocked("  holding new requests (--max-pause %s) while requests in flight finish", shortDuration(time.Duration(ms)*time.Millisecond))
		}
	case "before-switch command started":
		p.sayLocked("  running the before-switch command…")
	case "before-switch command finished":
		ms, _ := d["durationMs"].(float64)
		p.sayLocked("  before-switch command finished after %.1f s", ms/1000)
	case "deploy failed":
		endWait()
		p.sayLocked("✗ deploy failed: %s", str("error"))
	case "singleton replacement failed":
		p.sayLocked("✗ singleton %s failed to start: %s", str("processId"), str("error"))
	}
}

// finish stops showing events.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	if cut {
		return
	}
	// The reply came; its last events may still be on the way.
	replied := time.Now()
	for time.Since(replied) < time.Second {
		p.mu.Lock()
		quiet := time.Since(p.lastEvent) >= settle
		p.mu.Unlock()
		if quiet && time.Since(replied) >= settle {
			break
		}
		time.Sleep(settle / 3)
	}
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushUnknownLocked()
	if p.drawn {
		io.WriteString(p.w, "\r\033[K")
		p.drawn = false
	}
}

// drainLine tells, after finish, how many open connections previous (the
// release a deploy or rollback took the traffic from) still drains, if
// any, from the status after the reply.
func (p *progress) drainLine(previous *string, status func() []byte) {
	if p == nil || previous == nil {
		return
	}
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	if cut {
		return
	}
	var s struct {
		Releases []struct {
			ReleaseID       string `json:"releaseId"`
			State           string `json:"state"`
			ConnectionCount int64  `json:"connectionCount"`
		} `json:"releases"`
	}
	if json.Unmarshal(status(), &s) != nil { // asked without the lock
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range s.Releases {
		// A release that drains with nothing open is only stopping its
		// processes: there is nothing to wait for worth a line.
		if r.ReleaseID == *previous && r.State == "draining" && r.ConnectionCount > 0 {
			unit := "connections"
			if r.ConnectionCount == 1 {
				unit = "connection"
			}
			fmt.Fprintf(p.w, "  %s is draining %d open %s (up to %s s)\n", termText(r.ReleaseID), r.ConnectionCount, unit, jsconfig.FormatNumber(p.plan.Proxy.DrainTimeoutMs.Duration().Seconds()))
		}
	}
}

// previousRelease reads previousReleaseId from a deploy or rollback reply.
func previousRelease(raw []byte) *string {
	var reply struct {
		Previous *string `json:"previousReleaseId"`
	}
	if json.Unmarshal(raw, &reply) != nil {
		return nil
	}
	return reply.Previous
}
