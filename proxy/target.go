// Package proxy is rollbridge's stable listener: it forwards HTTP requests
// and WebSocket upgrades to the active target (the proxied process of the
// active release), counts connections per target so a retiring release can
// drain, and answers 503 while nothing is active. It knows nothing about
// processes or releases beyond a target's id and address.
package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync/atomic"
	"time"
)

// IdleUpstreamTimeout closes pooled upstream connections before a Node.js
// server's 5 s keep-alive timeout would, so the proxy never sends a request
// on a connection the application is about to close.
const IdleUpstreamTimeout = 4 * time.Second

// Target is one upstream: the proxied process of a release. It owns a
// keep-alive connection pool to that process and the release's connection
// counters.
type Target struct {
	id        string
	addr      string          // host:port, IPv6 bracketed
	transport *http.Transport // requests with a body, upgrades
	pool      *connPool       // everything else
	rp        *httputil.ReverseProxy

	http      atomic.Int64
	websocket atomic.Int64
	idle      chan struct{} // signalled when the count drops to zero

	observer Observer // nil: no metrics
	relay    bool     // forwards to another rollbridge proxy: headers unchanged
}

// Observer learns the outcome of every request a target answers (the
// daemon's metrics). It is called on the request's goroutine, so it must
// be quick.
type Observer interface {
	ObserveRequest(status int, elapsed time.Duration)
}

// SetObserver attaches metrics to the target before it receives traffic.
func (t *Target) SetObserver(o Observer) { t.observer = o }

// NewTarget returns a target for the upstream at host:port. id names it in
// logs and status (the release id).
func NewTarget(id, host string, port int, p *Proxy) *Target {
	t := &Target{id: id, addr: net.JoinHostPort(host, strconv.Itoa(port)), idle: make(chan struct{}, 1)}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dial := patientDial(dialer.DialContext)
	t.transport = &http.Transport{
		Proxy:                  nil, // never route upstream traffic through HTTP_PROXY
		DialContext:            dial,
		MaxIdleConns:           0,   // no overall limit: the per-host limit governs
		MaxIdleConnsPerHost:    512, // Go's default of 2 would reconnect under load
		IdleConnTimeout:        IdleUpstreamTimeout,
		DisableCompression:     true, // pass the client's Accept-Encoding through
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes, // Go's default is 10 MiB
		ForceAttemptHTTP2:      false,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
	t.pool = newConnPool(t.addr, dial)
	t.rp = &httputil.ReverseProxy{
		Rewrite:   t.rewrite,
		Transport: &upstreamTransport{pool: t.pool, fallback: tunnelTransport{t.transport}},
		// 0: a response of known length goes out in one write; streamed ones
		// (unknown length, text/event-stream) are still flushed at once.
		FlushInterval: 0,
		ErrorHandler:  p.upstreamError,
		BufferPool:    bufferPool,
		ErrorLog:      p.errorLog,
	}
	return t
}

// NewRelayTarget returns a target that forwards to another rollbridge
// proxy at host:port (a successor serving the same port) with the
// client's X-Forwarded-* headers unchanged: that proxy adds its own.
func NewRelayTarget(host string, port int, p *Proxy) *Target {
	t := NewTarget("relay", host, port, p)
	t.relay = true
	return t
}

// tunnelTransport hands ReverseProxy the upstream side of a WebSocket without
// CloseWrite, so the tunnel ends (both sides closed) as soon as either side
// reaches EOF, instead of lingering half-closed until the other side also
// closes (docs/nginx.md#4-websockets). The client side, a trackedConn, has no
// CloseWrite either.
type tunnelTransport struct{ base *http.Transport }

func (t tunnelTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	if err == nil && res.StatusCode == http.StatusSwitchingProtocols {
		if rwc, ok := res.Body.(io.ReadWriteCloser); ok {
			res.Body = plainConn{rwc}
		}
	}
	return res, err
}

// plainConn exposes only Read, Write and Close.
type plainConn struct{ rwc io.ReadWriteCloser }

func (c plainConn) Read(p []byte) (int, error)  { return c.rwc.Read(p) }
func (c plainConn) Write(p []byte) (int, error) { return c.rwc.Write(p) }
func (c plainConn) Close() error                { return c.rwc.Close() }

// ID returns the target's id.
func (t *Target) ID() string { return t.id }

// Connections returns the in-flight HTTP requests and open WebSocket
// tunnels of this target.
func (t *Target) Connections() (httpCount, websocketCount int64) {
	return t.http.Load(), t.websocket.Load()
}

func (t *Target) count() int64 { return t.http.Load() + t.websocket.Load() }

func (t *Target) done(c *atomic.Int64) {
	if c.Add(-1) == 0 && t.count() == 0 {
		select {
		case t.idle <- struct{}{}:
		default:
		}
	}
}

// WaitIdle returns when the target has no open connection, or when ctx
// ends; it reports whether the target became idle.
func (t *Target) WaitIdle(ctx context.Context) bool {
	for {
		if t.count() == 0 {
			return true
		}
		select {
		case <-t.idle:
		case <-ctx.Done():
			return t.count() == 0
		}
	}
}

// CloseIdleConnections closes the pooled upstream connections that are
// not carrying a request; requests in flight finish normally.
func (t *Target) CloseIdleConnections() {
	t.pool.closeIdle()
	t.transport.CloseIdleConnections()
}
