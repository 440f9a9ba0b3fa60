package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIdleUpstream bounds the pooled connections per target.
const maxIdleUpstream = 512

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
		return t.fallback.RoundTrip(withoutReplay(req))
	}
	return t.pool.roundTrip(req)
}

// connPool holds idle keep-alive connections to one upstream, most
// recently used first.
type connPool struct {
	addr   string
	dialer *net.Dialer

	mu       sync.Mutex
	idle     []*upConn
	sweeping bool
}

type upConn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time

	// raw and peek are made once per connection, so checking an idle
	// connection before reuse allocates nothing; peek records its
	// finding in alive.
	raw   syscall.RawConn
	peek  func(fd uintptr) bool
	alive bool
}

func newConnPool(addr string, dialer *net.Dialer) *connPool {
	return &connPool{addr: addr, dialer: dialer}
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

func (p *connPool) dial(ctx context.Context) (*upConn, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	uc := &upConn{c: c, br: bufio.NewReaderSize(c, 32<<10), bw: bufio.NewWriterSize(c, 4<<10)}
	if sc, ok := c.(syscall.Conn); ok {
		if uc.raw, err = sc.SyscallConn(); err != nil {
			c.Close()
			return nil, err
		}
		uc.peek = func(fd uintptr) bool {
			// recvfrom without a source address: unix.Recvfrom would
			// allocate one on every call. MSG_DONTWAIT never blocks.
			var b [1]byte
			_, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
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
// has been read to its end. A pooled connection that fails while the
// request is written is replaced once (the application saw nothing); one
// that fails after that is not: the application may have acted.
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
		// A client that goes away ends the exchange.
		stop := context.AfterFunc(ctx, func() { c.c.SetDeadline(time.Unix(1, 0)) })
		err := req.Write(c.bw)
		if err == nil {
			err = c.bw.Flush()
		}
		if err != nil {
			stop()
			c.c.Close()
			if reused && ctx.Err() == nil {
				c, reused = nil, false
				continue
			}
			return nil, err
		}
		resp, err := readFinalResponse(c.br, req)
		if err != nil {
			stop()
			c.c.Close()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		body := &pooledBody{rc: resp.Body, c: c, p: p, stop: stop, reusable: !resp.Close && !req.Close}
		if resp.Body == http.NoBody {
			body.finish(true)
		} else {
			resp.Body = body
		}
		return resp, nil
	}
}

// readFinalResponse reads the answer, skipping informational ones (100
// Continue, 103 Early Hints); 101 is final.
func readFinalResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode < 100 {
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
	cancelled := !b.stop() // the deadline may have been set meanwhile
	if complete && b.reusable && !cancelled {
		b.p.put(b.c)
		return
	}
	b.c.c.Close()
}
