package proxy

import (
	"cmp"
	"container/list"
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Bounds on held requests (docs/migrations.md#limits): beyond either, a new
// request is answered 503 at once instead of being held. MaxHeldBytes
// counts request lines and header fields (see headerBytes). Bodies are
// not counted: a held request's body stays unread in its socket.
const (
	MaxHeldRequests = 10000
	MaxHeldBytes    = 64 << 20
)

// holdFull answers a request that finds the hold full: Retry-After 1,
// since it is worth retrying soon. It is never installed as the gate.
var holdFull = &gate{mode: gateFull, retryAfter: "1"}

// gateMode is what the gate does with a request.
type gateMode int

const (
	gateHold        gateMode = iota + 1 // wait for a verdict
	gateRefuse                          // 503 + Retry-After (a pause that expired)
	gateMaintenance                     // the maintenance response
	// gateRelease: released requests are still waiting for their turn
	// to be forwarded (see dispatch); a new request queues behind them.
	gateRelease
	gateFull // the hold is full: the answer of holdFull, never a gate
)

// gate is the proxy's traffic control. nil (the usual case) lets every
// request through; the request path reads it with one atomic load.
type gate struct {
	mode       gateMode
	retryAfter string // whole seconds, for gateRefuse and gateMaintenance
	message    string // the maintenance message, the default one when none was given
}

// Maintenance is the answer every request gets in maintenance mode.
type Maintenance struct {
	// Message is shown in the response body; "" shows a default text.
	Message string
	// RetryAfter is sent as Retry-After, in whole seconds rounded up.
	RetryAfter time.Duration
}

// DefaultMaintenanceMessage is the body's text when no message was given.
const DefaultMaintenanceMessage = "The site is down for maintenance. Please try again later."

// waiter is one held request. verdict receives the gate to answer with,
// or nil to go on to the active target.
type waiter struct {
	verdict chan *gate
	bytes   int64
	elem    *list.Element // nil once the request left its queue
	upgrade bool          // not counted in flight, takes no release slot
	// released: the request is in the release queue (p.releasing), not
	// the hold queue; it is counted in flight.
	released bool
	// slot: the request was let go from the release queue and holds one
	// of the ReleaseConcurrency slots until its exchange ends.
	slot bool
}

// ReleaseConcurrency bounds the released requests being forwarded at
// once (docs/migrations.md#2-what-clients-see): the next one in arrival
// order goes when one is answered, so a release of thousands reuses the
// pooled upstream connections instead of opening one each at once.
const ReleaseConcurrency = 64

// holdQueue is the held requests in arrival order.
type holdQueue struct {
	list  list.List
	bytes int64
}

// GateCounters are the gate's totals since the proxy started.
type GateCounters struct {
	Held     int64 // requests that were held
	Released int64 // held requests let through to a target
	// Refused counts the 503s the gate answered, by reason: "limit" (the
	// hold was full), "expired" (a pause that reached its limit) and
	// "maintenance".
	Refused map[string]int64
}

// Hold makes the proxy hold new requests and WebSocket upgrades: accepted
// and read, neither forwarded nor failed, until Release, Refuse or
// SetMaintenance decides. Requests in flight go on.
func (p *Proxy) Hold() { p.setGate(&gate{mode: gateHold}) }

// Release lets held requests go on, in arrival order, at most
// ReleaseConcurrency of them forwarded at a time, each to the target
// active when its turn comes (what still waits after ReleaseWindow goes
// at once). Requests that arrive while released ones still wait for
// their turn queue behind them; once none waits, requests flow as
// usual. It returns how many held requests it let through. They count
// in flight from here on, and a Hold right after does not take them
// back; Refuse or maintenance answers those still waiting for their turn
// (the application never saw them).
func (p *Proxy) Release() (released int) {
	return p.setGate(nil)
}

// Refuse answers the held requests and every new one with 503 and a
// Retry-After of retryAfter, until the gate changes again. It returns
// how many held requests it answered.
func (p *Proxy) Refuse(retryAfter time.Duration) (refused int) {
	return p.setGate(&gate{mode: gateRefuse, retryAfter: seconds(retryAfter)})
}

// SetMaintenance answers every request, held ones included, with the
// maintenance response; nil turns maintenance off and lets requests flow
// (call Hold or Refuse instead to keep them from the target).
func (p *Proxy) SetMaintenance(m *Maintenance) {
	if m == nil {
		p.setGate(nil)
		return
	}
	p.setGate(&gate{mode: gateMaintenance, retryAfter: seconds(m.RetryAfter), message: cmp.Or(m.Message, DefaultMaintenanceMessage)})
}

// Held returns the number of held requests and their header bytes.
func (p *Proxy) Held() (requests int, bytes int64) {
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	return p.held.list.Len(), p.held.bytes
}

// Counters returns the gate's totals.
func (p *Proxy) Counters() GateCounters {
	return GateCounters{
		Held:     p.heldTotal.Load(),
		Released: p.releasedTotal.Load(),
		Refused: map[string]int64{
			"limit":       p.refusedLimit.Load(),
			"expired":     p.refusedExpired.Load(),
			"maintenance": p.refusedMaintenance.Load(),
		},
	}
}

// InFlight is the number of HTTP requests being forwarded to any target
// (not held ones, not WebSocket tunnels).
func (p *Proxy) InFlight() int64 { return p.inFlight.Load() }

// WaitInFlight returns when no HTTP request is being forwarded (open 0,
// err nil) or when ctx ends (what is still open, and ctx's error). After
// Hold, a 0 stays 0 until the gate opens: the request path counts a
// request in flight before it reads the gate.
func (p *Proxy) WaitInFlight(ctx context.Context) (open int64, err error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if open = p.inFlight.Load(); open == 0 {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			if open = p.inFlight.Load(); open == 0 {
				return 0, nil
			}
			return open, ctx.Err()
		case <-tick.C:
		}
	}
}

// setGate installs g and gives every held request its verdict when g no
// longer holds. It returns how many held requests got one.
//
// Released requests move to the release queue and are counted in flight
// here, under heldMu and before the gate opens: a release is a decision,
// so a Hold that follows at once does not hold them again, and
// WaitInFlight after that Hold waits for them like for any request
// already forwarded. dispatch lets them go in arrival order.
func (p *Proxy) setGate(g *gate) int {
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	if g != nil && g.mode == gateHold {
		p.gate.Store(g)
		return 0
	}
	n := p.held.list.Len()
	if g != nil {
		// Those still waiting for their turn were never forwarded: the
		// new gate answers them, and every held request.
		for e := p.releasing.Front(); e != nil; e = p.releasing.Front() {
			w := p.releasing.Remove(e).(*waiter)
			w.elem = nil
			if !w.upgrade {
				p.inFlight.Add(-1)
			}
			p.answering.Add(1)
			w.verdict <- g
		}
	}
	for e := p.held.list.Front(); e != nil; e = p.held.list.Front() {
		w := p.held.list.Remove(e).(*waiter)
		w.elem = nil
		if g != nil {
			p.answering.Add(1)
			w.verdict <- g
			continue
		}
		if !w.upgrade {
			p.inFlight.Add(1)
		}
		w.released = true
		w.elem = p.releasing.PushBack(w)
	}
	p.held.bytes = 0
	if g == nil && p.releasing.Len() > 0 {
		g = &gate{mode: gateRelease}
		p.releasedTotal.Add(int64(n))
	}
	p.gate.Store(g)
	p.dispatch()
	return n
}

// dispatch lets the next request of the release queue go when no woken
// one is still choosing its target and a slot is free (upgrades need
// none: a tunnel would keep it for hours). Only one is woken at a time,
// and it calls chosen once its target is chosen, so released requests
// reach the target in arrival order. When the queue is empty, a release
// gate opens. heldMu is held.
func (p *Proxy) dispatch() {
	for !p.choosing {
		e := p.releasing.Front()
		if e == nil {
			p.unbounded = false
			if p.paceTimer != nil {
				p.paceTimer.Stop()
				p.paceTimer = nil
				p.paceGen++ // a callback already under way does nothing
			}
			if g := p.gate.Load(); g != nil && g.mode == gateRelease {
				p.gate.Store(nil)
			}
			return
		}
		w := e.Value.(*waiter)
		if !w.upgrade {
			if p.slots >= p.releaseConcurrency && !p.unbounded {
				if p.paceTimer == nil {
					p.paceGen++
					gen := p.paceGen
					p.paceTimer = time.AfterFunc(p.releaseWindow, func() { p.endPacing(gen) })
				}
				return
			}
			p.slots++
			w.slot = true
		}
		p.releasing.Remove(e)
		w.elem = nil
		p.choosing = true
		w.verdict <- nil
	}
}

// ReleaseWindow bounds how long a release paces requests: what still
// waits in the release queue that long after it first had to wait for a
// slot goes on at once. The bound spares an application that answers
// quickly a burst; it must not stall the site behind slow requests (long
// polls, streams, a stuck application) that keep every slot, nor limit
// an application that is slow but serves many requests at once.
const ReleaseWindow = time.Second

// endPacing lets the whole release queue go, unless the timer gen was
// stopped meanwhile (a callback may already wait for heldMu when Stop is
// called, and must not end the pacing of a later release).
func (p *Proxy) endPacing(gen int) {
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	if gen != p.paceGen {
		return
	}
	p.paceTimer = nil
	if p.releasing.Len() > 0 {
		p.unbounded = true
		p.dispatch()
	}
}

// chosen: the released request woken last has chosen its target (or
// left), so the next may go.
func (p *Proxy) chosen() {
	p.heldMu.Lock()
	p.choosing = false
	p.dispatch()
	p.heldMu.Unlock()
}

// slotDone frees the slot of a released request whose exchange ended.
func (p *Proxy) slotDone(w *waiter) {
	if !w.slot {
		return
	}
	w.slot = false
	p.heldMu.Lock()
	p.slots--
	p.dispatch()
	p.heldMu.Unlock()
}

// Outcomes of a request's stay in the hold queue.
type holdOutcome int

const (
	holdReleased holdOutcome = iota // go on to the target, counted in flight
	holdAnswer                      // answer with the verdict's gate
	holdDone                        // answered already (the hold was full), or the client left
	holdRetry                       // the gate changed before the request was queued
)

// admit is the request path while a gate is set (g, as read after the
// request was counted in flight). A request that is not an upgrade comes
// in counted; when admit returns ok it is still (or again) counted and
// may be forwarded, and released is its waiter, for chosen once its
// target is chosen and slotDone once its exchange ended (nil when it
// never waited). When ok is false the request was answered, or its
// client left and its connection was closed, and it is no longer
// counted.
func (p *Proxy) admit(w http.ResponseWriter, r *http.Request, g *gate, upgrade bool, start time.Time) (released *waiter, ok bool) {
	if !upgrade {
		p.inFlight.Add(-1) // held or answered, it is not in flight
	}
	for {
		if g == nil {
			// The gate opened meanwhile. Count the request before the
			// gate is read again, as the normal path does.
			if !upgrade {
				p.inFlight.Add(1)
			}
			if g = p.gate.Load(); g == nil {
				return nil, true
			}
			if !upgrade {
				p.inFlight.Add(-1)
			}
			continue
		}
		if g.mode != gateHold && g.mode != gateRelease {
			p.answer(w, r, g, upgrade, start)
			return nil, false
		}
		wt, verdict, outcome := p.hold(w, r, g, upgrade, start)
		switch outcome {
		case holdReleased:
			return wt, true
		case holdAnswer:
			p.answer(w, r, verdict, upgrade, start)
			p.answering.Add(-1)
			return nil, false
		case holdDone:
			return nil, false
		}
		g = p.gate.Load()
	}
}

// hold queues the request while g is the gate and waits for its verdict,
// or for its client to leave. Behind a release (gateRelease) it joins
// the release queue, already decided: requests that arrive after a
// release do not overtake the released ones.
func (p *Proxy) hold(w http.ResponseWriter, r *http.Request, g *gate, upgrade bool, start time.Time) (*waiter, *gate, holdOutcome) {
	wt := &waiter{verdict: make(chan *gate, 1), upgrade: upgrade}
	if g.mode == gateHold {
		wt.bytes = headerBytes(r) // counted against MaxHeldBytes in the hold queue only
	}
	p.heldMu.Lock()
	if p.gate.Load() != g {
		p.heldMu.Unlock()
		return nil, nil, holdRetry
	}
	if g.mode == gateRelease {
		if !upgrade {
			p.inFlight.Add(1)
		}
		wt.released = true
		wt.elem = p.releasing.PushBack(wt)
		p.heldMu.Unlock()
	} else {
		if p.held.list.Len() >= p.maxHeld || p.held.bytes+wt.bytes > p.maxHeldBytes {
			p.heldMu.Unlock()
			p.answer(w, r, holdFull, upgrade, start)
			return nil, nil, holdDone
		}
		wt.elem = p.held.list.PushBack(wt)
		p.held.bytes += wt.bytes
		p.heldMu.Unlock()
		p.heldTotal.Add(1)
	}

	// net/http notices a client that leaves (r.Context ends) only while
	// nothing of the request is left to read, and only some time after
	// the close. A request with a body keeps its body unread in the socket
	// while held, so its socket itself is watched for the client's FIN or
	// RST, now and then, to free its place. Every released request's
	// socket is checked once more, so that nothing is sent to the
	// application for a client that has left.
	var gone <-chan time.Time
	conn, _ := r.Context().Value(connKey{}).(*trackedConn)
	if conn != nil && r.Body != nil && r.Body != http.NoBody {
		tick := time.NewTicker(heldPollInterval)
		defer tick.Stop()
		gone = tick.C
	}
	for {
		select {
		case v := <-wt.verdict:
			if v != nil {
				return nil, v, holdAnswer
			}
			if r.Context().Err() == nil && (conn == nil || !conn.peerClosed()) {
				return wt, nil, holdReleased
			}
			wt.verdict <- nil // leave takes it again
		case <-r.Context().Done():
		case <-gone:
			if !conn.peerClosed() {
				continue
			}
		}
		p.leave(w, wt)
		return nil, nil, holdDone
	}
}

// heldPollInterval is how often the socket of a held request with a body
// is checked for a client that left. 10000 held uploads cost 10000 polls
// a second.
const heldPollInterval = time.Second

// leave takes a held request whose client went away out of its queue
// and closes its connection without an answer: net/http would otherwise
// answer 200 for a handler that wrote nothing, to a client that may still
// read (one that only shut down its sending side). A request that got
// its verdict meanwhile takes it: a released one passes the turn and its
// slot on and is no longer counted in flight; a refused one needs no
// answer.
func (p *Proxy) leave(w http.ResponseWriter, wt *waiter) {
	p.heldMu.Lock()
	queued := wt.elem != nil
	if queued {
		if wt.released {
			p.releasing.Remove(wt.elem)
			if !wt.upgrade {
				p.inFlight.Add(-1)
			}
		} else {
			p.held.list.Remove(wt.elem)
			p.held.bytes -= wt.bytes
		}
		wt.elem = nil
	}
	p.heldMu.Unlock()
	if !queued {
		// Out of the queue: its verdict was given under heldMu already.
		if v := <-wt.verdict; v == nil {
			if !wt.upgrade {
				p.inFlight.Add(-1)
			}
			p.chosen()
			p.slotDone(wt)
		} else {
			p.answering.Add(-1)
		}
	}
	hijackAndWrite(w, "")
}

// answer responds for the gate g: the maintenance response, the 503 of
// an expired pause, or that of a full hold. start is when the request
// arrived.
func (p *Proxy) answer(w http.ResponseWriter, r *http.Request, g *gate, upgrade bool, start time.Time) {
	p.observeRefusal(start) // before the answer can reach the client
	switch g.mode {
	case gateMaintenance:
		p.refusedMaintenance.Add(1)
	case gateFull:
		p.refusedLimit.Add(1)
	default:
		p.refusedExpired.Add(1)
	}
	switch {
	case upgrade:
		writeRawRefusal(w, g.retryAfter)
		return
	case g.mode == gateMaintenance:
		writeMaintenance(w, r, g)
	case g.mode == gateFull:
		write503(w, r, g.retryAfter, textPlain, "Too many requests are waiting; try again shortly.\n")
	default:
		write503(w, r, g.retryAfter, textPlain, "Traffic is paused; try again later.\n")
	}
	// Into the socket now, not when the handler returns: Shutdown closes
	// the connection once every held request has answered.
	http.NewResponseController(w).Flush()
}

// observeRefusal tells the metrics of a 503 the proxy answered itself,
// with the time since the request arrived (its time held included: the
// metrics see what the client saw). A zero start, on the path without a
// gate, observes no duration, so that path never reads the clock.
func (p *Proxy) observeRefusal(start time.Time) {
	if p.idleObserver == nil {
		return
	}
	var elapsed time.Duration
	if !start.IsZero() {
		elapsed = time.Since(start)
	}
	p.idleObserver.ObserveRequest(http.StatusServiceUnavailable, elapsed)
}

// textPlain is the Content-Type of the gate's plain-text answers.
const textPlain = "text/plain; charset=utf-8"

// write503 answers 503 with Retry-After and body as ctype, never cached
// and never sniffed as another type (the page is what it says: no script
// sniffed from a message). HEAD gets the headers only.
func write503(w http.ResponseWriter, r *http.Request, retryAfter, ctype, body string) {
	h := w.Header()
	h.Set("Retry-After", retryAfter)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

// writeRawRefusal answers an upgrade: the status line and headers only,
// then the connection closes.
func writeRawRefusal(w http.ResponseWriter, retryAfter string) {
	hijackAndWrite(w, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: "+retryAfter+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

// writeMaintenance answers with the maintenance page in the format the
// client prefers by Accept: HTML, JSON or plain text.
func writeMaintenance(w http.ResponseWriter, r *http.Request, g *gate) {
	msg := g.message
	var body, ctype string
	switch preferredFormat(r.Header.Values("Accept")) {
	case "text/html":
		ctype = "text/html; charset=utf-8"
		body = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Down for maintenance</title></head>\n<body><h1>Down for maintenance</h1>\n<p>" + html.EscapeString(msg) + "</p></body></html>\n"
	case "application/json":
		ctype = "application/json; charset=utf-8"
		b, _ := json.Marshal(struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}{"maintenance", msg})
		body = string(b) + "\n"
	default:
		ctype = textPlain
		body = msg + "\n"
	}
	w.Header().Add("Vary", "Accept")
	write503(w, r, g.retryAfter, ctype, body)
}

// maintenanceFormats are the formats of the maintenance response; on a
// tie in quality, specificity and the client's order the earlier one
// wins.
var maintenanceFormats = [...]string{"text/plain", "application/json", "text/html"}

// preferredFormat picks the maintenance format for an Accept header:
// highest q first, then the most specific range that matched (type/sub
// over type/* over */*), then the range the client listed first
// ("application/json, text/plain, */*" is JSON). No usable Accept:
// text/plain. The header comes from the client, so this is one pass that
// allocates nothing, however many ranges and parameters it holds
// (net/http bounds its size).
func preferredFormat(accept []string) string {
	var q [len(maintenanceFormats)]float64
	var spec, pos [len(maintenanceFormats)]int // pos: the range's place in the header
	for i := range spec {
		q[i], spec[i] = -1, -1
	}
	n := 0
	for _, line := range accept {
		for line != "" {
			var part, params string
			part, line, _ = strings.Cut(line, ",")
			n++
			mt, params, _ := strings.Cut(part, ";")
			mt = strings.TrimSpace(mt)
			var s [len(maintenanceFormats)]int
			matched := false
			for i, f := range maintenanceFormats {
				if s[i] = specificity(mt, f); s[i] > spec[i] {
					matched = true
				}
			}
			if !matched {
				continue
			}
			rangeQ := 1.0
			for params != "" {
				var prm string
				prm, params, _ = strings.Cut(params, ";")
				if k, v, _ := strings.Cut(prm, "="); strings.EqualFold(strings.TrimSpace(k), "q") {
					rangeQ = qvalue(strings.TrimSpace(v))
					break // what follows q are accept-extensions
				}
			}
			for i := range maintenanceFormats {
				if s[i] > spec[i] {
					q[i], spec[i], pos[i] = rangeQ, s[i], n
				}
			}
		}
	}
	best := -1
	for i := range maintenanceFormats {
		if q[i] > 0 && (best < 0 || q[i] > q[best] || (q[i] == q[best] && (spec[i] > spec[best] || (spec[i] == spec[best] && pos[i] < pos[best])))) {
			best = i
		}
	}
	if best < 0 {
		return "text/plain"
	}
	return maintenanceFormats[best]
}

// specificity is how closely the media range mt matches format: 2 exact,
// 1 type/*, 0 */*, -1 not at all.
func specificity(mt, format string) int {
	typ, _, _ := strings.Cut(format, "/")
	switch {
	case strings.EqualFold(mt, format):
		return 2
	case len(mt) == len(typ)+2 && strings.EqualFold(mt[:len(typ)], typ) && mt[len(typ):] == "/*":
		return 1
	case mt == "*/*":
		return 0
	}
	return -1
}

// qvalue parses a weight as HTTP defines it: "0" or "1", optionally with
// up to three decimals ("0.8", "1.000"). Anything else counts as 0, not
// acceptable.
func qvalue(v string) float64 {
	if v == "" || len(v) > 5 || (v[0] != '0' && v[0] != '1') {
		return 0
	}
	if len(v) > 1 && v[1] != '.' {
		return 0
	}
	f, frac := float64(v[0]-'0'), 0.1
	for i := 2; i < len(v); i++ {
		d := v[i]
		if d < '0' || d > '9' || (v[0] == '1' && d != '0') {
			return 0
		}
		f += float64(d-'0') * frac
		frac /= 10
	}
	return f
}

// headerBytes is what a held request's header costs: the request line
// and every header field, each field with heldFieldOverhead for what
// parsing it took beyond its text.
func headerBytes(r *http.Request) int64 {
	n := int64(len(r.Method) + len(r.RequestURI) + len(r.Proto) + len(r.Host) + 16)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += int64(len(k) + len(v) + heldFieldOverhead)
		}
	}
	return n
}

// heldFieldOverhead is the memory a parsed header field takes beyond its
// name and value (map entry, string and slice headers): 80 to 90 bytes
// in Go 1.26. Without it a header of a few thousand tiny fields would
// count for a tenth of what it holds.
const heldFieldOverhead = 80

// seconds formats d as whole seconds, rounded up, at least 1.
func seconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// heldAnswerWait bounds how long Shutdown waits for held requests to
// write the 503 it gave them before it closes their connections.
const heldAnswerWait = time.Second
