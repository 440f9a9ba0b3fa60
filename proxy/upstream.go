package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxIdleUpstream bounds the pooled connections per target.
const maxIdleUpstream = 512

// Limits on what an application sends before a response's body: Go's
// Transport's header limit, and the cap on informational responses that
// older Go versions had (both paths apply both here).
const (
	// maxResponseHeaderBytes bounds a response's status line and header
	// fields, on the pooled path together with the informational
	// responses before it.
	maxResponseHeaderBytes = 1 << 20
	// max1xxResponses is how many informational responses (100 Continue,
	// 103 Early Hints, ...) may come before the final one.
	max1xxResponses = 5
)

// Why an application's answer was refused; each becomes a 502 and the
// text of a proxy error event.
var (
	errHeaderTooLarge = fmt.Errorf("upstream response headers exceeded %d bytes", maxResponseHeaderBytes)
	errTooMany1xx     = fmt.Errorf("upstream sent more than %d informational (1xx) responses", max1xxResponses)
)

// errReplayRefused ends a request the standard Transport was about to
// send a second time.
var errReplayRefused = errors.New("upstream connection failed after the request was sent; it is not sent again")

// badStatusError is a status code the proxy cannot pass on (below 100).
type badStatusError int

func (e badStatusError) Error() string {
	return fmt.Sprintf("upstream sent the invalid status code %03d", int(e))
}

// switchError is a 101 Switching Protocols to a protocol the client did
// not ask for (want is "" for a request that asked for no upgrade).
type switchError struct{ got, want string }

func (e switchError) Error() string {
	if e.want == "" {
		return "upstream answered 101 Switching Protocols to a request that asked for no upgrade"
	}
	return fmt.Sprintf("upstream switched to protocol %q when %q was asked for", e.got, e.want)
}

// upstreamTransport is the round tripper of a target. Requests without a
// body — nearly all of them — take a short path: the handler's goroutine
// writes the request on a pooled keep-alive connection and reads the
// answer from it itself. net/http's Transport hands every exchange to a
// reader and a writer goroutine per connection; on a small machine those
// hand-offs cost more CPU than the proxying. Requests with a body and
// upgrades go through the standard Transport (where a request body and
// an early answer can overlap).
type upstreamTransport struct {
	pool     *connPool
	fallback http.RoundTripper
}

func (t *upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if (req.Body != nil && req.Body != http.NoBody) || req.Header.Get("Upgrade") != "" {
		return t.roundTripStandard(req)
	}
	return t.pool.roundTrip(req)
}

// roundTripStandard passes a request with a body, or an upgrade, to the
// standard Transport. It applies the header limit and Go's retry rule
// (a written request with a body is never sent again); this adds what it
// lets through and the proxy must not: more than max1xxResponses
// informational answers, a status below 100, and a 101 that switches to
// a protocol the client did not ask for. The Transport keeps no
// connection after a final status below 200, and the body of a 101 is
// the connection itself, so closing it leaves nothing open.
func (t *upstreamTransport) roundTripStandard(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	g := &informationalCounter{cancel: cancel}
	// Go's Transport would send a replayable request (a WebSocket
	// handshake) again after it was written to a reused connection that
	// then failed, though the application may have read it; this path
	// cannot tell whether it did (mayRetry can), so it never does.
	var written atomic.Bool
	trace := &httptrace.ClientTrace{
		Got1xxResponse: g.got1xx,
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				written.Store(true)
			}
		},
		GotConn: func(httptrace.GotConnInfo) {
			if written.Load() {
				cancel(errReplayRefused)
			}
		},
	}
	res, err := t.fallback.RoundTrip(req.WithContext(httptrace.WithClientTrace(ctx, trace)))
	if err != nil {
		if cause := context.Cause(ctx); (errors.Is(cause, errTooMany1xx) || errors.Is(cause, errReplayRefused)) && req.Context().Err() == nil {
			err = cause
		} else if strings.Contains(err.Error(), "server response headers exceeded") {
			err = errHeaderTooLarge // the same words on both paths
		}
		return nil, err
	}
	var refused error
	switch code := res.StatusCode; {
	case g.n.Load() > max1xxResponses:
		refused = errTooMany1xx // all of it arrived before the cancel took
	case code < 100:
		refused = badStatusError(code)
	case code == http.StatusSwitchingProtocols:
		want := req.Header.Get("Upgrade")
		if got := upgradeType(res.Header); want == "" || !strings.EqualFold(got, want) {
			refused = switchError{got, want}
		}
	}
	if refused != nil {
		res.Body.Close()
		return nil, refused
	}
	return res, nil
}

// informationalCounter ends an exchange at the informational answer one
// too many. The hook's own error would be lost (ReverseProxy's hook runs
// after it and its result is the one that counts), so it cancels.
type informationalCounter struct {
	cancel context.CancelCauseFunc
	n      atomic.Int32
}

func (g *informationalCounter) got1xx(int, textproto.MIMEHeader) error {
	if g.n.Add(1) > max1xxResponses {
		g.cancel(errTooMany1xx)
	}
	return nil
}

// connPool holds idle keep-alive connections to one upstream, most
// recently used first.
type connPool struct {
	addr   string
	dialer func(ctx context.Context, network, addr string) (net.Conn, error)

	mu       sync.Mutex
	idle     []*upConn
	sweeping bool
}

type upConn struct {
	c      net.Conn
	br     *bufio.Reader // reads through the upConn: header limit, byte count
	bw     *bufio.Writer // writes through the upConn: byte count
	idleAt time.Time

	// Per exchange, touched only by the goroutine that owns the
	// connection: how much header may still come (unlimited while a body
	// is read), and the bytes read and written, which decide whether a
	// failed request may be sent again.
	readLimit     int64
	nread, nwrite int64
	// sent counts every byte written on the connection, to compare with
	// what the application's TCP stack acknowledged (delivered).
	sent int64

	// abort closes the connection for a client that went away; made
	// once, so arming it costs no closure per request.
	abort func()

	// raw and peek are made once per connection, so checking an idle
	// connection before reuse allocates nothing; peek records its
	// finding in alive.
	raw   syscall.RawConn
	peek  func(fd uintptr) bool
	alive bool
}

func newConnPool(addr string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *connPool {
	return &connPool{addr: addr, dialer: dial}
}

// get returns a pooled connection that has been idle for less than
// IdleUpstreamTimeout and that the application has not closed, or nil.
func (p *connPool) get() *upConn {
	now := time.Now()
	for {
		p.mu.Lock()
		if len(p.idle) == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		p.mu.Unlock()
		if now.Sub(c.idleAt) < IdleUpstreamTimeout && c.open() {
			return c
		}
		c.c.Close() // the application may be closing it: never reuse
	}
}

// open reports whether an idle connection is still usable: the
// application has neither closed it nor sent anything unasked. One
// non-blocking peek; net/http's Transport learns the same from a reader
// goroutine per idle connection.
func (c *upConn) open() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil {
		return true
	}
	c.alive = false
	err := c.raw.Read(c.peek)
	return err == nil && c.alive
}

// Read reads from the connection within the header limit.
func (c *upConn) Read(p []byte) (int, error) {
	if c.readLimit <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > c.readLimit {
		p = p[:c.readLimit]
	}
	n, err := c.c.Read(p)
	c.readLimit -= int64(n)
	c.nread += int64(n)
	return n, err
}

// Write writes to the connection and counts what it wrote.
func (c *upConn) Write(p []byte) (int, error) {
	n, err := c.c.Write(p)
	c.nwrite += int64(n)
	c.sent += int64(n)
	return n, err
}

func (p *connPool) dial(ctx context.Context) (*upConn, error) {
	c, err := p.dialer(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	uc := &upConn{c: c}
	uc.br = bufio.NewReaderSize(uc, 32<<10)
	uc.bw = bufio.NewWriterSize(uc, 4<<10)
	uc.abort = func() { c.Close() }
	if sc, ok := c.(syscall.Conn); ok {
		if uc.raw, err = sc.SyscallConn(); err != nil {
			c.Close()
			return nil, err
		}
		uc.peek = func(fd uintptr) bool {
			_, errno := peekByte(fd)
			uc.alive = errno == unix.EAGAIN || errno == unix.EWOULDBLOCK
			return true // never wait for data
		}
	}
	return uc, nil
}

// put returns a connection whose last answer was read completely.
func (p *connPool) put(c *upConn) {
	c.idleAt = time.Now()
	p.mu.Lock()
	if len(p.idle) >= maxIdleUpstream {
		p.mu.Unlock()
		c.c.Close()
		return
	}
	p.idle = append(p.idle, c)
	sweep := !p.sweeping
	p.sweeping = true
	p.mu.Unlock()
	if sweep {
		time.AfterFunc(IdleUpstreamTimeout, p.sweep)
	}
}

// sweep closes connections idle for IdleUpstreamTimeout, so none is left
// for the application to time out, and runs again while any remain.
func (p *connPool) sweep() {
	now := time.Now()
	p.mu.Lock()
	kept := p.idle[:0]
	var expired []*upConn
	for _, c := range p.idle {
		if now.Sub(c.idleAt) >= IdleUpstreamTimeout {
			expired = append(expired, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	again := len(kept) > 0
	p.sweeping = again
	p.mu.Unlock()
	for _, c := range expired {
		c.c.Close()
	}
	if again {
		time.AfterFunc(IdleUpstreamTimeout/2, p.sweep)
	}
}

// closeIdle closes every pooled connection.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.c.Close()
	}
}

// roundTrip sends a body-less request and returns the answer; its body
// reads from the connection, which goes back to the pool once the body
// has been read to its end. A request that fails on a reused connection
// before any byte of an answer arrived is sent once more on a new
// connection when that is safe (see mayRetry).
func (p *connPool) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	c := p.get()
	reused := c != nil
	for {
		if c == nil {
			var err error
			if c, err = p.dial(ctx); err != nil {
				return nil, err
			}
		}
		// A client that goes away closes the connection at once: whatever
		// state the exchange left it in, nobody can reuse it.
		stop := context.AfterFunc(ctx, c.abort)
		resp, err := c.exchange(req)
		if err != nil {
			stop()
			retry := reused && ctx.Err() == nil && mayRetry(req, c, err) // before the close: it asks the socket
			c.c.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if retry {
				c, reused = nil, false
				continue
			}
			return nil, err
		}
		// After a CONNECT, the bytes that follow are a tunnel's, not HTTP
		// (the proxy refuses CONNECT, so this is a second line of defence).
		body := &pooledBody{rc: resp.Body, c: c, p: p, stop: stop, reusable: !resp.Close && !req.Close && req.Method != http.MethodConnect}
		if resp.Body == http.NoBody {
			body.finish(true)
		} else {
			resp.Body = body
		}
		return resp, nil
	}
}

// mayRetry decides whether a request that failed on a reused connection
// (the application may have closed it as idle just as the request went
// out) is sent once more on a new connection. Never after a byte of an
// answer arrived. Always when nothing of it was written. Otherwise only
// when it is replayable (Go's Transport rule) and provably never reached
// the application: either its bytes were never acknowledged by the
// application's TCP stack (they met a socket the application had already
// closed, which answers with a reset), or the connection was reset, which
// happens when the application closes it with the request still unread.
// A request the application read and then dropped without an answer is
// not sent again: it may have acted on it.
func mayRetry(req *http.Request, c *upConn, err error) bool {
	switch {
	case c.nread != 0:
		return false
	case c.nwrite == 0:
		return true
	}
	return replayable(req) && (errors.Is(err, syscall.ECONNRESET) || !c.delivered())
}

// delivered reports whether the peer acknowledged every byte written on
// the connection (TCP_INFO's bytes_acked); when that cannot be told, it
// assumes they arrived.
func (c *upConn) delivered() bool {
	if c.raw == nil {
		return true
	}
	var info *unix.TCPInfo
	var infoErr error
	if err := c.raw.Control(func(fd uintptr) {
		info, infoErr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || infoErr != nil {
		return true
	}
	return info.Bytes_acked >= uint64(c.sent)
}

// replayable is Go's isReplayable for a request without a body: an
// idempotent method, or a request its client marked idempotent.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// exchange writes req and reads up to the final answer's header.
func (c *upConn) exchange(req *http.Request) (*http.Response, error) {
	c.nread, c.nwrite = 0, 0
	c.readLimit = maxResponseHeaderBytes
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return nil, err
	}
	resp, err := readFinalResponse(c.br, req)
	if err != nil {
		if c.readLimit <= 0 {
			err = errHeaderTooLarge // whatever the parser made of the cut
		}
		return nil, err
	}
	c.readLimit = math.MaxInt64 // bodies are streamed, not held
	return resp, nil
}

// readFinalResponse reads the answer, skipping up to max1xxResponses
// informational ones. A 101 is refused: requests on this path never ask
// for an upgrade, and what follows it is not HTTP. So is a status below
// 100, which cannot be passed on.
func readFinalResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for informational := 0; ; informational++ {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		switch code := resp.StatusCode; {
		case code < 100:
			return nil, badStatusError(code)
		case code == http.StatusSwitchingProtocols:
			return nil, switchError{got: upgradeType(resp.Header)}
		case code < 200:
			if informational == max1xxResponses {
				return nil, errTooMany1xx
			}
		default:
			return resp, nil
		}
	}
}

// pooledBody returns its connection to the pool at EOF; closed before
// that, the connection is dropped.
type pooledBody struct {
	rc       io.ReadCloser
	c        *upConn
	p        *connPool
	stop     func() bool
	reusable bool
	done     bool
}

func (b *pooledBody) Read(buf []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(buf)
	if errors.Is(err, io.EOF) {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *pooledBody) Close() error {
	b.finish(false)
	return nil
}

// finish releases the connection once: to the pool when the answer was
// read completely and the connection may be kept, else closed.
func (b *pooledBody) finish(complete bool) {
	if b.done {
		return
	}
	b.done = true
	cancelled := !b.stop() // the client left: the connection is closed or closing
	if complete && b.reusable && !cancelled {
		b.p.put(b.c)
		return
	}
	b.c.c.Close()
}
