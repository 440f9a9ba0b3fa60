package control

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Handler runs one control request and returns the JSON object of a
// success response (without "status"), or an error whose message is sent.
type Handler interface {
	HandleControl(ctx context.Context, req *Request, conn *Conn) ([]byte, error)
}

// Server accepts control connections and answers their requests. Lines of
// one connection are handled in order, each answered with one line.
type Server struct {
	handler Handler
	// OnConnError is told about socket errors on a connection ("control
	// connection error": the errno name or "", and the message).
	OnConnError func(code, message string)
	// OnCommandError is told about every request answered with an error.
	OnCommandError func(err error)

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*Conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// Conn is one control connection.
type Conn struct {
	c net.Conn
	s *Server

	mu         sync.Mutex
	busy       bool // a request is being handled
	closeAfter bool // close once the current reply is written
	closed     bool

	r *bufio.Reader // its requests

	streaming bool          // after a follow: the handler's stream owns the writes
	done      chan struct{} // closed with the connection

	// Set by a handler for its reply: files passed with it (SCM_RIGHTS)
	// and what runs once it has been written.
	files      []*os.File
	afterReply func()
}

// SendFiles passes files with the reply to the current request, as
// SCM_RIGHTS ancillary data on the same write; they are closed here
// after the reply went out.
func (c *Conn) SendFiles(files ...*os.File) {
	c.mu.Lock()
	c.files = append(c.files, files...)
	c.mu.Unlock()
}

// Gone reports whether the client has closed its end (or sent nothing more
// and hung up): a queued operation whose requester is gone is not run. A
// client that only half-closed also reads as gone; it gets an error. Only
// the handler of the connection's current request may call it: between
// requests the connection's reader fills the buffer Gone looks at.
func (c *Conn) Gone() bool {
	c.mu.Lock()
	r := c.r
	c.mu.Unlock()
	if r != nil && r.Buffered() > 0 {
		return false // more requests are waiting: the client is there
	}
	sc, ok := c.c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		gone = n == 0 && err == nil || err == unix.ECONNRESET
		return true
	})
	return gone
}

// PeerPID is the pid of the process at the other end (SO_PEERCRED), or
// 0 when it cannot be read.
func (c *Conn) PeerPID() int {
	cred, err := peerCredentials(Endpoint{}, c.c) // the endpoint only names the socket in errors
	if err != nil {
		return 0
	}
	return int(cred.Pid)
}

// AfterReply runs fn once the reply to the current request has been
// written (or failed to be).
func (c *Conn) AfterReply(fn func()) {
	c.mu.Lock()
	c.afterReply = fn
	c.mu.Unlock()
}

// NewServer returns a server that dispatches to h.
func NewServer(h Handler) *Server {
	return &Server{handler: h, conns: map[*Conn]struct{}{}}
}

// Serve accepts connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		conn := &Conn{c: c, s: s, done: make(chan struct{})}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go conn.serve()
	}
}

// Close stops accepting and closes every connection but except: idle ones
// at once, busy ones as soon as their current reply is written. It does
// not wait for them.
func (s *Server) Close(except *Conn) {
	s.mu.Lock()
	s.closing = true
	ln := s.ln
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		if c != except {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, c := range conns {
		c.mu.Lock()
		if c.busy {
			c.closeAfter = true
			c.mu.Unlock()
			continue
		}
		c.mu.Unlock()
		c.close()
	}
}

// Wait returns when every connection has ended.
func (s *Server) Wait() { s.wg.Wait() }

func (c *Conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.c.Close()
	close(c.done)
}

// Stream hands the connection to the handler's stream once the current
// reply is written: later lines from the client are read and ignored,
// and the connection ends when the client closes it or the server does.
func (c *Conn) Stream() {
	c.mu.Lock()
	c.streaming = true
	c.mu.Unlock()
}

// Done is closed when the connection is.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Write writes stream data; only a streaming handler calls it.
func (c *Conn) Write(p []byte) (int, error) { return c.c.Write(p) }

// serve reads request lines and answers each one.
func (c *Conn) serve() {
	defer func() {
		c.close()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		c.s.wg.Done()
	}()
	r := bufio.NewReaderSize(c.c, 64<<10)
	c.mu.Lock()
	c.r = r
	c.mu.Unlock()
	for {
		line, err := readLine(r)
		if errors.Is(err, errLineTooLong) {
			c.reply(Failure("Control request exceeds 1 MiB"))
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.connError(err)
			}
			return // a trailing fragment without "\n" is never processed
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.busy = true
		c.mu.Unlock()
		resp, closeConn := c.handle(line)
		ok := c.reply(resp)
		c.mu.Lock()
		c.busy = false
		closeConn = closeConn || c.closeAfter
		streaming := c.streaming
		c.mu.Unlock()
		if !ok || closeConn {
			return
		}
		if streaming {
			// Nothing more is answered; reading on notices the client leave.
			_, _ = io.Copy(io.Discard, r)
			return
		}
	}
}

// handle answers one line. A shutdown or retire-owner request closes the
// connection after its reply, success or not.
func (c *Conn) handle(line []byte) (resp []byte, closeConn bool) {
	req, err := ParseRequest(line)
	if req != nil {
		closeConn = req.Command == "shutdown" || req.Command == "retire-owner"
	}
	if err == nil {
		var body []byte
		body, err = c.s.handler.HandleControl(context.Background(), req, c)
		if err == nil {
			return Success(body), closeConn
		}
	}
	if c.s.OnCommandError != nil {
		c.s.OnCommandError(err)
	}
	return FailureFor(err), closeConn
}

// reply writes one response line in a single write, with the files a
// handler attached.
func (c *Conn) reply(resp []byte) bool {
	buf := make([]byte, 0, len(resp)+1)
	buf = append(append(buf, resp...), '\n')
	c.mu.Lock()
	files, after := c.files, c.afterReply
	c.files, c.afterReply = nil, nil
	c.mu.Unlock()
	if after != nil {
		defer after()
	}
	var err error
	if uc, ok := c.c.(*net.UnixConn); ok && len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		_, _, err = uc.WriteMsgUnix(buf, unix.UnixRights(fds...), nil)
		for _, f := range files {
			f.Close()
		}
	} else {
		for _, f := range files {
			f.Close()
		}
		_, err = c.c.Write(buf)
	}
	if err != nil {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if !closed {
			c.connError(err)
		}
		return false
	}
	return true
}

func (c *Conn) connError(err error) {
	if c.s.OnConnError == nil {
		return
	}
	code := ""
	var errno syscall.Errno
	if errors.As(err, &errno) {
		code = unix.ErrnoName(errno)
	}
	c.s.OnConnError(code, connErrorText(err))
}

// connErrorText describes a broken connection the way Node.js does
// ("write EPIPE", "read ECONNRESET"), never with the socket's addresses:
// the listener was bound under a temporary name in a private directory
// that is gone once the socket is in place, and a log line naming it
// would send whoever reads it looking in the wrong place.
func connErrorText(err error) string {
	var op *net.OpError
	if !errors.As(err, &op) || op.Err == nil {
		return err.Error()
	}
	var errno syscall.Errno
	if errors.As(op.Err, &errno) {
		return op.Op + " " + unix.ErrnoName(errno)
	}
	return op.Op + ": " + op.Err.Error()
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its "\n", refusing lines over
// MaxRequestBytes without ever holding more than that.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > MaxRequestBytes+1 {
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}
