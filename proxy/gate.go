package proxy

import (
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
// request is answered 503 at once instead of being held. Bodies are not
// counted: a held request's body stays unread in its socket.
const (
	MaxHeldRequests = 10000
	MaxHeldBytes    = 64 << 20
)

// limitRetryAfter is the Retry-After of a request refused because the
// hold is full: it is worth retrying soon.
const limitRetryAfter = time.Second

// gateMode is what the gate does with a request.
type gateMode int

const (
	gateHold        gateMode = iota + 1 // wait for a verdict
	gateRefuse                          // 503 + Retry-After (a pause that expired)
	gateMaintenance                     // the maintenance response
)

// gate is the proxy's traffic control. nil (the usual case) lets every
// request through; the request path reads it with one atomic load.
type gate struct {
	mode        gateMode
	retryAfter  string // whole seconds, for gateRefuse and gateMaintenance
	maintenance Maintenance
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
	elem    *list.Element
}

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

// Release lets held requests go on, in arrival order, to the target
// active at that moment, and later requests flow as usual. It returns
// how many held requests it let through.
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
	p.setGate(&gate{mode: gateMaintenance, retryAfter: seconds(m.RetryAfter), maintenance: *m})
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
func (p *Proxy) setGate(g *gate) int {
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	p.gate.Store(g)
	if g != nil && g.mode == gateHold {
		return 0
	}
	n := 0
	for e := p.held.list.Front(); e != nil; e = p.held.list.Front() {
		w := p.held.list.Remove(e).(*waiter)
		w.elem = nil
		p.held.bytes -= w.bytes
		w.verdict <- g
		n++
	}
	if g == nil {
		p.releasedTotal.Add(int64(n))
	}
	return n
}

// admit passes the request through the gate. It returns true when the
// request may be forwarded, with the request counted in flight when it
// is not an upgrade; false when the gate answered it or its client left.
func (p *Proxy) admit(w http.ResponseWriter, r *http.Request, upgrade bool) bool {
	for {
		if !upgrade {
			p.inFlight.Add(1)
		}
		g := p.gate.Load()
		if g == nil {
			return true
		}
		if !upgrade {
			p.inFlight.Add(-1)
		}
		if g.mode != gateHold {
			p.answer(w, r, g, upgrade)
			return false
		}
		verdict, ok := p.hold(w, r, g, upgrade)
		if !ok {
			return false
		}
		if verdict != nil {
			p.answer(w, r, verdict, upgrade)
			return false
		}
	}
}

// hold queues the request while g is the gate and waits for its verdict.
// ok is false when the request was answered (the hold is full) or its
// client went away.
func (p *Proxy) hold(w http.ResponseWriter, r *http.Request, g *gate, upgrade bool) (verdict *gate, ok bool) {
	size := headerBytes(r)
	wt := &waiter{verdict: make(chan *gate, 1), bytes: size}
	p.heldMu.Lock()
	if p.gate.Load() != g {
		p.heldMu.Unlock()
		return nil, true // the gate changed meanwhile: look again
	}
	if p.held.list.Len() >= MaxHeldRequests || p.held.bytes+size > MaxHeldBytes {
		p.heldMu.Unlock()
		p.refusedLimit.Add(1)
		p.writeRefusal(w, r, seconds(limitRetryAfter), "Too many requests are waiting; try again shortly.\n", upgrade)
		return nil, false
	}
	wt.elem = p.held.list.PushBack(wt)
	p.held.bytes += size
	p.heldMu.Unlock()
	p.heldTotal.Add(1)

	select {
	case v := <-wt.verdict:
		return v, true
	case <-r.Context().Done():
		p.heldMu.Lock()
		if wt.elem != nil {
			p.held.list.Remove(wt.elem)
			p.held.bytes -= wt.bytes
			wt.elem = nil
		}
		p.heldMu.Unlock()
		return nil, false
	}
}

// answer responds for the gate g: the maintenance response, or the 503
// of an expired pause.
func (p *Proxy) answer(w http.ResponseWriter, r *http.Request, g *gate, upgrade bool) {
	if g.mode == gateMaintenance {
		p.refusedMaintenance.Add(1)
		if upgrade {
			writeRawRefusal(w, g.retryAfter)
		} else {
			writeMaintenance(w, r, g)
		}
	} else {
		p.refusedExpired.Add(1)
		p.writeRefusal(w, r, g.retryAfter, "Traffic is paused; try again later.\n", upgrade)
	}
	if p.idleObserver != nil {
		p.idleObserver.ObserveRequest(http.StatusServiceUnavailable, 0)
	}
}

// writeRefusal answers 503 with Retry-After and a plain-text body; an
// upgrade gets the status line and headers only, then the connection
// closes.
func (p *Proxy) writeRefusal(w http.ResponseWriter, r *http.Request, retryAfter, body string, upgrade bool) {
	if upgrade {
		writeRawRefusal(w, retryAfter)
		return
	}
	h := w.Header()
	h.Set("Retry-After", retryAfter)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

func writeRawRefusal(w http.ResponseWriter, retryAfter string) {
	hijackAndWrite(w, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: "+retryAfter+"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

// writeMaintenance answers with the maintenance page in the format the
// client prefers by Accept: HTML, JSON or plain text.
func writeMaintenance(w http.ResponseWriter, r *http.Request, g *gate) {
	msg := g.maintenance.Message
	if msg == "" {
		msg = DefaultMaintenanceMessage
	}
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
		ctype = "text/plain; charset=utf-8"
		body = msg + "\n"
	}
	h := w.Header()
	h.Set("Retry-After", g.retryAfter)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Add("Vary", "Accept")
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

// maintenanceFormats are the formats of the maintenance response; on a
// tie in quality and specificity the earlier one wins.
var maintenanceFormats = [...]string{"text/plain", "application/json", "text/html"}

// preferredFormat picks the maintenance format for an Accept header:
// highest q first, then the most specific range that matched (type/sub
// over type/* over */*). No usable Accept: text/plain.
func preferredFormat(accept []string) string {
	best, bestQ, bestSpec := "text/plain", -1.0, -1
	for _, f := range maintenanceFormats {
		q, spec := acceptQuality(accept, f)
		if q > bestQ || (q == bestQ && spec > bestSpec) {
			best, bestQ, bestSpec = f, q, spec
		}
	}
	if bestQ <= 0 {
		return "text/plain"
	}
	return best
}

// acceptQuality is the q of the most specific Accept range matching
// format, and that range's specificity (2 exact, 1 type/*, 0 */*); q is
// -1 when no range matches.
func acceptQuality(accept []string, format string) (q float64, spec int) {
	q, spec = -1, -1
	typ, _, _ := strings.Cut(format, "/")
	for _, line := range accept {
		for _, part := range strings.Split(line, ",") {
			rangeQ := 1.0
			params := strings.Split(part, ";")
			mt := strings.ToLower(strings.TrimSpace(params[0]))
			for _, prm := range params[1:] {
				k, v, _ := strings.Cut(strings.TrimSpace(prm), "=")
				if strings.EqualFold(strings.TrimSpace(k), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					if err != nil || f < 0 || f > 1 {
						f = 0
					}
					rangeQ = f
				}
			}
			s := -1
			switch {
			case mt == format:
				s = 2
			case mt == typ+"/*":
				s = 1
			case mt == "*/*":
				s = 0
			}
			if s > spec {
				q, spec = rangeQ, s
			}
		}
	}
	return q, spec
}

// headerBytes is what a held request's header costs: request line and
// header fields as read.
func headerBytes(r *http.Request) int64 {
	n := int64(len(r.Method) + len(r.RequestURI) + len(r.Proto) + len(r.Host) + 16)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4)
		}
	}
	return n
}

// seconds formats d as whole seconds, rounded up, at least 1.
func seconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
