package proxy

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/sys/unix"
)

// ShutdownGrace is how long Shutdown lets open client connections finish
// after the listener closed before it closes them.
const ShutdownGrace = 5 * time.Second

// Limits on client connections (docs/nginx.md#5-timeouts-and-streaming).
const (
	// DefaultReadHeaderTimeout bounds the reading of a request's header:
	// from a connection's acceptance, or from the first byte of a later
	// request on a keep-alive connection. A connection that sends nothing,
	// or trickles its header, cannot hold a descriptor longer.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes a keep-alive connection that carried no
	// request for this long; above nginx's 60 s upstream
	// keepalive_timeout, so nginx closes first.
	DefaultIdleTimeout = 120 * time.Second
)

// drainIdleGrace is how long a draining proxy keeps an idle keep-alive
// connection open for one more request (answered with Connection: close):
// closing it at once would fail a request the client sends meanwhile.
const drainIdleGrace = time.Second

// Proxy forwards requests to the active target. Its request path takes no
// lock: the active target is an atomic pointer.
type Proxy struct {
	active       atomic.Pointer[Target]
	idleObserver Observer
	onError      func(message string)
	errorLog     *log.Logger
	server       *http.Server
	draining     atomic.Bool // answers carry Connection: close

	mu    sync.Mutex
	conns map[*trackedConn]struct{}

	// The gate (docs/migrations.md): nil lets requests through.
	gate   atomic.Pointer[gate]
	heldMu sync.Mutex // guards held and the release queue; gate changes under it
	held   holdQueue
	// releasing is the release queue: released requests (and those that
	// arrived behind them) waiting for their turn, in arrival order;
	// slots counts those let go whose exchange has not ended, choosing
	// whether the one let go last is still choosing its target.
	releasing          list.List
	slots              int
	choosing           bool
	releaseConcurrency int
	// paceTimer ends the pacing releaseWindow after the queue first
	// waited for a slot: unbounded lets the rest go at once.
	paceTimer          *time.Timer
	paceGen            int // which timer paceTimer is: a stopped one's callback does nothing
	releaseWindow      time.Duration
	unbounded          bool
	inFlight           atomic.Int64
	heldTotal          atomic.Int64
	releasedTotal      atomic.Int64
	refusedLimit       atomic.Int64
	refusedExpired     atomic.Int64
	refusedMaintenance atomic.Int64
	// answering counts held requests given a refusal that have not yet
	// written it; Shutdown waits for them before closing connections.
	answering atomic.Int64
	// maxHeld and maxHeldBytes are MaxHeldRequests and MaxHeldBytes;
	// tests lower them.
	maxHeld      int
	maxHeldBytes int64
	// released, when set (tests), sees each released request as it
	// chooses its target.
	released func(r *http.Request)
}

// Options configure a Proxy.
type Options struct {
	// OnError receives one message per failed upstream exchange, e.g.
	// "connect ECONNREFUSED 127.0.0.1:18000" (the daemon's proxy error).
	OnError func(message string)
	// Idle observes the requests answered 503 because nothing is active;
	// nil: no metrics.
	Idle Observer
	// ReadHeaderTimeout and IdleTimeout limit client connections; zero
	// means DefaultReadHeaderTimeout and DefaultIdleTimeout. A slow
	// request body is not cut by either.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
}

// New returns a proxy with no active target: every request gets 503.
func New(opts Options) *Proxy {
	p := &Proxy{onError: opts.OnError, idleObserver: opts.Idle, errorLog: log.New(io.Discard, "", 0), conns: map[*trackedConn]struct{}{},
		maxHeld: MaxHeldRequests, maxHeldBytes: MaxHeldBytes, releaseConcurrency: ReleaseConcurrency, releaseWindow: ReleaseWindow}
	p.server = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: cmp.Or(opts.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       cmp.Or(opts.IdleTimeout, DefaultIdleTimeout),
		ConnState:         p.connState,
		ErrorLog:          p.errorLog,
		// A held request's handler finds its connection here, to watch
		// for a client that leaves while its body waits unread.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	return p
}

// connKey is the context key of a request's client connection.
type connKey struct{}

// SetActive routes new requests and upgrades to t (nil: answer 503) and
// returns the previous target. The previous target's idle pooled upstream
// connections are closed at once; its requests in flight finish on it.
func (p *Proxy) SetActive(t *Target) (previous *Target) {
	previous = p.active.Swap(t)
	if previous != nil && previous != t {
		previous.CloseIdleConnections()
	}
	return previous
}

// Active returns the current target, or nil.
func (p *Proxy) Active() *Target { return p.active.Load() }

// Serve accepts connections on ln until Shutdown. It returns nil after a
// shutdown.
func (p *Proxy) Serve(ln net.Listener) error {
	err := p.server.Serve(&trackingListener{Listener: ln, p: p})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets open client connections (requests,
// WebSocket tunnels, idle keep-alive connections) finish for up to grace,
// then closes what is left. Held requests are answered 503 with
// Retry-After: 1 first (and so is every request after them), since
// nobody will release them.
func (p *Proxy) Shutdown(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if g := p.gate.Load(); g != nil && g.mode == gateHold {
		// Nobody will release them any more: answer rather than cut, and
		// give the answers time to be written even with no grace (they
		// are small: a socket takes them at once).
		p.Refuse(time.Second)
		deadline := time.Now().Add(heldAnswerWait)
		for p.answering.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	err := p.server.Shutdown(ctx) // closes the listener and idle connections
	for !p.idle() && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	p.mu.Lock()
	for c := range p.conns {
		c.Conn.Close()
	}
	p.mu.Unlock()
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil // the leftovers were closed: that is the bound working
	}
	return err
}

// Drain is the shutdown of a daemon whose listening socket lives on in a
// successor; the caller has closed its listener already. Requests on
// connections it accepted are still answered (Go's Shutdown would drop
// a request read after it began), each with Connection: close, so the
// client's next request opens a connection to the successor. An idle
// keep-alive connection is not closed at once, which would race the
// request its client may be sending: it gets drainIdleGrace for one more
// request. Open connections and WebSocket tunnels get up to grace to
// finish before the rest is closed.
func (p *Proxy) Drain(grace time.Duration) error {
	start := time.Now()
	p.draining.Store(true)
	deadline := start.Add(grace)
	for !p.idle() && time.Now().Before(deadline) {
		p.closeIdle(start)
		time.Sleep(10 * time.Millisecond)
	}
	return p.Shutdown(0)
}

// closeIdle closes the client connections that have been idle for
// drainIdleGrace, counted from the drain's start at the earliest, and
// that have no request on the way in.
func (p *Proxy) closeIdle(drainStart time.Time) {
	now, from := time.Now().UnixNano(), drainStart.UnixNano()
	var idle []*trackedConn
	p.mu.Lock()
	for c := range p.conns {
		if since := c.idleSince.Load(); since != 0 && max(since, from)+int64(drainIdleGrace) <= now {
			idle = append(idle, c)
		}
	}
	p.mu.Unlock()
	for _, c := range idle {
		if !c.unread() {
			c.Close()
		}
	}
}

// connState notes when a client connection becomes idle (accepted, or
// its last answer sent) and when it carries a request again. Only a
// drain reads the time (its grace counts from the drain's start at the
// earliest), so outside one the request path does not ask the clock:
// idleBeforeDrain just marks the connection idle.
func (p *Proxy) connState(nc net.Conn, state http.ConnState) {
	c, ok := nc.(*trackedConn)
	if !ok {
		return
	}
	switch state {
	case http.StateNew, http.StateIdle:
		since := idleBeforeDrain
		if p.draining.Load() {
			since = time.Now().UnixNano()
		}
		c.idleSince.Store(since)
	case http.StateActive, http.StateHijacked:
		c.idleSince.Store(0)
	}
}

// idleBeforeDrain is idleSince of a connection that became idle before a
// drain began: earlier than any drain start.
const idleBeforeDrain int64 = 1

func (p *Proxy) idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) == 0
}

// ServeHTTP routes one request to the target active when it arrives.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		refuseConnect(w)
		return
	}
	upgrade := upgradeType(r.Header)
	if upgrade == "" {
		// Counted before the gate is read, so that after Hold a
		// WaitInFlight that sees 0 knows nothing can be forwarded until
		// the gate opens.
		p.inFlight.Add(1)
	}
	var start time.Time // when a held request arrived
	var released *waiter
	if g := p.gate.Load(); g != nil {
		start = time.Now()
		var ok bool
		if released, ok = p.admit(w, r, g, upgrade != "", start); !ok {
			return
		}
	}
	if upgrade == "" {
		defer p.inFlight.Add(-1)
	}
	t := p.active.Load()
	if released != nil {
		// The target is chosen: the next released request may go.
		if p.released != nil {
			p.released(r)
		}
		defer p.slotDone(released)
		p.chosen()
	}
	if upgrade == "" && p.draining.Load() {
		// net/http closes after the answer; the client's next request
		// opens a connection to the successor.
		w.Header().Set("Connection", "close")
	}
	if t == nil {
		if upgrade != "" {
			hijackAndWrite(w, "HTTP/1.1 503 Service Unavailable\r\n\r\n")
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "No active release\n")
		p.observeRefusal(start)
		return
	}
	if upgrade != "" {
		t.websocket.Add(1)
		defer t.done(&t.websocket)
		if r.Method != http.MethodGet || !strings.EqualFold(upgrade, "websocket") {
			hijackAndWrite(w, "") // not a WebSocket: drop it without an answer
			return
		}
		t.rp.ServeHTTP(w, r)
		return
	}
	t.http.Add(1)
	defer t.done(&t.http)
	if t.observer == nil {
		t.rp.ServeHTTP(w, r)
		return
	}
	if start.IsZero() {
		start = time.Now()
	}
	rec := &statusRecorder{ResponseWriter: w}
	t.rp.ServeHTTP(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	t.observer.ObserveRequest(status, time.Since(start))
}

// statusRecorder notes the status a response is sent with; Unwrap lets
// http.ResponseController reach the connection (flushes, hijacks).
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// refuseConnect answers CONNECT, which would turn the proxy into a tunnel
// to wherever the client names. 405 without an Allow header: the proxy
// cannot know which methods the application supports. The connection is
// closed, since a CONNECT client sends tunnel bytes next, not HTTP.
func refuseConnect(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusMethodNotAllowed)
	io.WriteString(w, "CONNECT is not supported\n")
}

// rewrite prepares the upstream request: same method, path and query, Host
// unchanged, X-Forwarded-* appended the way the Node.js rollbridge does
// (docs/nginx.md#3-host-and-x-forwarded--headers). ReverseProxy has removed
// Forwarded, X-Forwarded-For, -Host and -Proto from out, and every header the
// client named in Connection.
func (t *Target) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = t.addr
	out.URL.RawQuery = in.URL.RawQuery // verbatim, as received
	out.Host = in.Host
	hop := in.Header["Connection"] // headers named in it are hop-by-hop
	if t.relay {
		for _, name := range [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Proto"} {
			if v := priorValues(in.Header, hop, name); len(v) > 0 {
				out.Header[name] = v
			}
		}
		return
	}
	ip, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		ip = in.RemoteAddr
	}
	port := "80"
	if i := strings.LastIndexByte(in.Host, ':'); i >= 0 && i+1 < len(in.Host) && allDigits(in.Host[i+1:]) {
		port = in.Host[i+1:]
	}
	proto := "http"
	upgrade := upgradeType(in.Header) != ""
	if upgrade {
		proto = "ws"
	}
	// One array backs the four one-value X-Forwarded-* headers (a
	// capacity of 1 each, so appending to one never touches another).
	fwd := make([]string, 4)
	appendForwarded(out.Header, priorValues(in.Header, hop, "X-Forwarded-For"), "X-Forwarded-For", ip, fwd[0:1:1])
	appendForwarded(out.Header, priorValues(in.Header, hop, "X-Forwarded-Port"), "X-Forwarded-Port", port, fwd[1:2:2])
	appendForwarded(out.Header, priorValues(in.Header, hop, "X-Forwarded-Proto"), "X-Forwarded-Proto", proto, fwd[2:3:3])
	// X-Forwarded-Host is kept, or set to Host except on upgrades, as the
	// Node.js rollbridge does. Forwarded is never passed on: an
	// application that honours it would trust the address, scheme and host
	// a client claims.
	if v := priorValues(in.Header, hop, "X-Forwarded-Host"); len(v) > 0 {
		out.Header["X-Forwarded-Host"] = v
	} else if !upgrade {
		fwd[3] = in.Host
		out.Header["X-Forwarded-Host"] = fwd[3:4:4]
	}
}

// priorValues is the client's value of name (a canonical key), unless
// the client named it in Connection.
func priorValues(in http.Header, connection []string, name string) []string {
	v := in[name]
	if len(v) > 0 && len(connection) > 0 && httpguts.HeaderValuesContainsToken(connection, name) {
		return nil
	}
	return v
}

// appendForwarded sets name to prior + "," + v, or v, stored in slot, a
// slice of length 1.
func appendForwarded(out http.Header, prior []string, name, v string, slot []string) {
	if len(prior) > 0 {
		v = strings.Join(prior, ", ") + "," + v
	}
	slot[0] = v
	out[name] = slot
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// upgradeType is the Upgrade header's value when Connection asks for an
// upgrade, else "".
func upgradeType(h http.Header) string {
	if httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade") {
		return h.Get("Upgrade")
	}
	return ""
}

// upstreamError answers a failed upstream exchange: 502 for a request
// whose response has not started, a silently closed socket for an upgrade.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away; there is nobody to answer
	}
	if p.onError != nil {
		p.onError(upstreamMessage(err))
	}
	if upgradeType(r.Header) != "" {
		hijackAndWrite(w, "")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	io.WriteString(w, "Bad gateway\n")
}

// upstreamMessage describes an upstream failure the way the reference
// logs it, e.g. "connect ECONNREFUSED 127.0.0.1:18000".
func upstreamMessage(err error) string {
	var opErr *net.OpError
	var errno syscall.Errno
	if errors.As(err, &opErr) && errors.As(err, &errno) {
		op := opErr.Op
		if op == "dial" {
			op = "connect"
		}
		addr := ""
		if opErr.Addr != nil {
			addr = " " + opErr.Addr.String()
		}
		return op + " " + unix.ErrnoName(errno) + addr
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "socket hang up"
	}
	return err.Error()
}

// hijackAndWrite takes over the client connection, writes raw (maybe
// nothing) and closes it.
func hijackAndWrite(w http.ResponseWriter, raw string) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	if raw != "" {
		io.WriteString(conn, raw)
	}
	conn.Close()
}

// trackingListener remembers every accepted connection until it closes,
// so Shutdown can end WebSocket tunnels (hijacked, so unknown to
// http.Server) after the grace period.
type trackingListener struct {
	net.Listener
	p *Proxy
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// A connection accepted while shutting down is still served: closing
	// it unanswered would fail a request that reached a live listener
	// (the socket may have been handed to a successor that would have
	// answered it).
	tc := &trackedConn{Conn: c, p: l.p}
	l.p.mu.Lock()
	l.p.conns[tc] = struct{}{}
	l.p.mu.Unlock()
	return tc, nil
}

type trackedConn struct {
	net.Conn
	p    *Proxy
	once sync.Once
	// idleSince is when the connection last became idle, in Unix
	// nanoseconds; 0 while a request is read or answered.
	idleSince atomic.Int64
}

// Read clears idleSince as soon as a request's first bytes are read,
// before net/http reports the connection active (after the whole header).
func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.idleSince.Load() != 0 {
		c.idleSince.Store(0)
	}
	return n, err
}

// unread reports whether request bytes wait in the socket, not yet read.
func (c *trackedConn) unread() bool {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	waiting := false
	// Control, not Read: Read would wait for the lock held by net/http's
	// blocked read. A non-blocking peek consumes nothing.
	raw.Control(func(fd uintptr) {
		n, errno := peekByte(fd)
		waiting = errno == 0 && n > 0
	})
	return waiting
}

// peekByte looks at the next byte waiting on socket fd without consuming
// it and without waiting: n is 1 when a byte waits, 0 at end of stream,
// errno EAGAIN when nothing is there. recvfrom is called without a source
// address: unix.Recvfrom would allocate one on every call.
func peekByte(fd uintptr) (n uintptr, errno syscall.Errno) {
	var b [1]byte
	n, _, errno = unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return n, errno
}

// peerClosed reports whether the client shut down its side (a FIN or an
// RST arrived), also while request bytes still wait unread before it.
func (c *trackedConn) peerClosed() bool {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true // closed
	}
	closed := false
	raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
			closed = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return closed
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
	return c.Conn.Close()
}

// bufferPool recycles the 32 KiB copy buffers of the request path.
var bufferPool = &syncBufferPool{}

type syncBufferPool struct{ pool sync.Pool }

func (b *syncBufferPool) Get() []byte {
	if v := b.pool.Get(); v != nil {
		return *(v.(*[]byte))
	}
	return make([]byte, 32<<10)
}

func (b *syncBufferPool) Put(buf []byte) { b.pool.Put(&buf) }
