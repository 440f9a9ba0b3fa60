package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/sdnotify"
	"golang.org/x/sys/unix"
)

// Bootstrap is the release a daemon activates before it accepts commands
// (docs/cli.md#bootstrap-starting-with-a-known-release), echoed as
// status.bootstrap.
type Bootstrap struct {
	ReleasePath string
	ReleaseID   string
	Revision    string
	Attestation string // "" when not given
}

func (b *Bootstrap) object() jsconfig.Object {
	o := jsconfig.Object{}
	if b.Attestation != "" {
		o = append(o, jsconfig.Field{Key: "attestation", Value: b.Attestation})
	}
	return append(o,
		jsconfig.Field{Key: "releaseId", Value: b.ReleaseID},
		jsconfig.Field{Key: "releasePath", Value: b.ReleasePath},
		jsconfig.Field{Key: "revision", Value: b.Revision},
	)
}

// TakeoverError is how a candidate that gave up reports why.
type TakeoverError struct{ Cause error }

func (e *TakeoverError) Error() string { return "takeover failed: " + e.Cause.Error() }
func (e *TakeoverError) Unwrap() error { return e.Cause }

// Serve brings the daemon up in its mode (plain, bootstrap or takeover
// candidate) and serves until a shutdown or a retirement has completed.
// Signals are handled from the start: SIGINT or SIGTERM during a
// bootstrap aborts it, stops what it started, and Serve returns nil.
func (e *Engine) Serve() error {
	// ended: the daemon stops because it was asked to (shutdown, signal,
	// retirement), not because it failed; only then is its pid file stale
	// for certain and removed.
	ended := false
	defer func() {
		if ended && e.opts.PIDFile != "" {
			removeOwnPIDFile(e.opts.PIDFile, os.Getpid())
		}
	}()
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	signal.Ignore(syscall.SIGPIPE) // a closed stdout must not end the daemon
	lowerOOMScore()                // before the first process starts
	defer signal.Stop(signals)

	launched := make(chan error, 1)
	go func() { launched <- e.launch() }()
	signalled := false
	for {
		select {
		case s := <-signals:
			name := unix.SignalName(s.(syscall.Signal))
			if s == syscall.SIGHUP || signalled || e.stopping.Load() {
				e.events.log("signal ignored", jsconfig.Field{Key: "signal", Value: name})
				continue
			}
			signalled = true
			go e.Shutdown(nil)
		case err := <-launched:
			launched = nil
			if err != nil {
				if failed := e.failure(); failed != nil {
					<-e.shutdown.done
					return failed
				}
				if signalled {
					<-e.shutdown.done // the signal aborted the start: a clean exit
					ended = true
					return nil
				}
				return err
			}
			e.notify("READY=1")
		case <-e.shutdown.done:
			if launched != nil {
				continue // the start notices the shutdown and reports back
			}
			e.waitForReplies()
			if failed := e.failure(); failed != nil {
				return failed
			}
			ended = true
			if signalled {
				return e.shutdown.err
			}
			return nil
		case <-e.retirement.done:
			e.waitForReplies()
			ended = true
			return nil
		}
	}
}

// waitForReplies lets replies still being written (the shutdown's own,
// refusals of queued commands) go out before the process ends.
func (e *Engine) waitForReplies() {
	waited := make(chan struct{})
	go func() { e.server.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(connectionGrace):
	}
}

// launch runs the start-up of the daemon's mode. A failed bootstrap or
// takeover stops everything it started before returning its cause.
func (e *Engine) launch() error {
	switch {
	case e.opts.Bootstrap == nil:
		return e.Start()
	case e.opts.Takeover:
		if err := e.takeover(); err != nil {
			return e.failLaunch(&TakeoverError{Cause: err})
		}
		return nil
	default:
		if err := e.bootstrap(); err != nil {
			return e.failLaunch(err)
		}
		return nil
	}
}

// failLaunch reports a failed bootstrap and stops what it started. The
// control socket and the state file are touched only if this daemon
// created them (it never did, at this point).
func (e *Engine) failLaunch(cause error) error {
	if !errors.Is(cause, ErrShuttingDown) {
		e.events.log("bootstrap activation failed", jsconfig.Field{Key: "releaseId", Value: e.opts.Bootstrap.ReleaseID}, jsconfig.Field{Key: "status", Value: "error"})
	}
	e.mu.Lock()
	exposed := e.socket != nil
	e.mu.Unlock()
	if e.persist != nil && !e.opts.Takeover && !exposed {
		// A daemon that won the control socket meanwhile owns the state
		// file: what this one still stops is recorded beside it.
		if probe, err := control.Probe(ControlEndpoint(e.opts.Plan.Control)); err != nil || probe.Alive {
			e.persist.useSibling()
		}
	}
	e.launchFailed.Store(true)
	e.Shutdown(nil)
	return cause
}

// bootstrap is the foreground start of a known release
// (docs/cli.md#bootstrap-starting-with-a-known-release): the proxy first,
// then the release through the normal deploy flow, and only then the control
// socket, so nothing else can deploy meanwhile.
func (e *Engine) bootstrap() error {
	if err := e.prepare(); err != nil {
		return err
	}
	// No live daemon owned the socket a moment ago, so the state file is
	// this daemon's to write: the release's processes are recorded as they
	// start, before anyone can reach this daemon.
	if e.persist != nil {
		e.persist.start()
	}
	e.mu.Lock()
	readopted := e.active
	e.mu.Unlock()
	if readopted != nil {
		// The release that was live when the daemon died serves again:
		// it is newer than the one the unit names, or the same.
		e.events.log("bootstrap skipped", jsconfig.Field{Key: "activeReleaseId", Value: readopted.ID}, jsconfig.Field{Key: "releaseId", Value: e.opts.Bootstrap.ReleaseID})
	} else {
		e.stopOrphansBeforeBootstrap()
		if err := e.deployBootstrap(false); err != nil {
			return err
		}
	}
	sock, err := e.controlListener()
	if err != nil {
		return err
	}
	return e.exposeControl(sock)
}

// takeover replaces the daemon that owns the control socket
// (docs/cli.md#takeover-replacing-the-running-daemon): the release is started
// and health-checked while the owner still serves; then the owner retires
// and, when it is a Go daemon, hands over its listening sockets, so they
// never stop accepting. Singletons start only once the owner's have stopped.
func (e *Engine) takeover() error {
	plan := e.opts.Plan
	e.fds = openFDStore(e)
	defer e.fds.closeUnused()
	if plan.StatePath != "" {
		// No orphan report: the owner's processes are not orphans. The
		// owner still writes the state file, so this daemon records its
		// processes in its sibling file until it owns the control socket.
		e.persist = newPersister(e, plan.StatePath)
		e.persist.path = siblingPath(plan.StatePath, os.Getpid())
		e.persist.start()
	}
	if err := e.deployBootstrap(true); err != nil {
		return err
	}
	if e.stopping.Load() {
		return ErrShuttingDown
	}
	req := control.SortedRequest("retire-owner",
		jsconfig.Field{Key: "attestation", Value: e.opts.Bootstrap.Attestation},
		jsconfig.Field{Key: "handoff", Value: true})
	raw, files, err := control.CallWithFiles(ControlEndpoint(plan.Control), req)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return err
	}
	var proxyLn net.Listener
	var sock *controlSocket
	if handedOver(raw) && len(files) == 2 {
		proxyLn, sock, err = adoptListeners(plan.Control.Path, files[0], files[1])
		if err != nil {
			return err
		}
		if !listensAt(proxyLn, plan.Proxy) {
			// The config moved the proxy: the owner's port is let go and
			// the configured one bound (the proxy.* change takes effect).
			proxyLn.Close()
			proxyLn = nil
		}
	}
	// The owner's pause or maintenance holds here before this daemon
	// serves a single request, on the adopted listener or a new one.
	e.restoreTraffic(handedOverTraffic(raw), trafficFromTakeover)
	if proxyLn != nil {
		e.serveProxy(proxyLn)
	} else if err := e.bindProxy(); err != nil {
		if sock != nil {
			// The owner is gone and the socket is this daemon's: nobody
			// answers on it any more, so it must not stay behind.
			sock.listener.Close()
			sock.remove()
		}
		return err // an owner that ignored the handoff freed the port
	}
	if sock == nil {
		if sock, err = listenControl(plan.Control); err != nil {
			return err
		}
	}
	if err := e.exposeControl(sock); err != nil {
		return err
	}
	// The owner wrote its last state before it replied (it records what it
	// still drains in a sibling file of its own): the state file is ours.
	e.persist.useMain()
	// The owner has let the metrics address go; failing to take it must
	// not undo a takeover that already serves.
	if err := e.serveMetrics(); err != nil {
		e.events.log("metrics listener failed", jsconfig.Field{Key: "error", Value: err.Error()})
	}
	e.mu.Lock()
	active, next := e.active, e.plan
	e.mu.Unlock()
	if active != nil {
		if err := e.replaceSingletons(next, active); err != nil && !errors.Is(err, ErrShuttingDown) {
			// The release serves; as after a deploy, the failure is logged
			// and the daemon keeps running.
			e.events.log("command failed", jsconfig.Field{Key: "error", Value: err.Error()})
		}
	}
	return nil
}

// handedOver reports whether a retire-owner reply announces a handoff.
func handedOver(raw []byte) bool {
	var reply struct {
		Handoff bool `json:"handoff"`
	}
	return json.Unmarshal(raw, &reply) == nil && reply.Handoff
}

// listensAt reports whether ln is the configured proxy listener: the same
// port (any, for port 0) and, for an IP literal host, the same address.
func listensAt(ln net.Listener, px jsconfig.Proxy) bool {
	a, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return false
	}
	if px.Port != 0 && a.Port != px.Port {
		return false
	}
	if ip := net.ParseIP(px.Host); ip != nil && !ip.Equal(a.IP) {
		return false
	}
	return true
}

// adoptListeners turns the handed-over descriptors into listeners. The
// control socket file stays where the owner bound it; this daemon now
// owns it and removes it at its own shutdown.
func adoptListeners(path string, proxyFile, controlFile *os.File) (net.Listener, *controlSocket, error) {
	proxyLn, err := net.FileListener(proxyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot use the handed-over proxy socket: %w", err)
	}
	cl, err := net.FileListener(controlFile)
	if err != nil {
		proxyLn.Close()
		return nil, nil, fmt.Errorf("cannot use the handed-over control socket: %w", err)
	}
	ul, ok := cl.(*net.UnixListener)
	if !ok {
		proxyLn.Close()
		cl.Close()
		return nil, nil, errors.New("the handed-over control socket is not a Unix socket")
	}
	ul.SetUnlinkOnClose(false)
	fi, err := os.Lstat(path)
	if err != nil {
		proxyLn.Close()
		ul.Close()
		return nil, nil, err
	}
	return proxyLn, &controlSocket{path: path, listener: ul, inode: fi}, nil
}

// deployBootstrap activates the bootstrap release through the deploy flow.
func (e *Engine) deployBootstrap(deferSingletons bool) error {
	b := e.opts.Bootstrap
	if err := e.ops.acquireAs(&operation{command: "deploy", releaseID: b.ReleaseID}); err != nil {
		return err
	}
	defer e.ops.release()
	_, err := e.deploy(DeployRequest{ReleasePath: b.ReleasePath, ReleaseID: b.ReleaseID, Revision: b.Revision, RevisionSet: true, deferSingletons: deferSingletons})
	return err
}

// bindProxy binds the stable listener and serves it.
func (e *Engine) bindProxy() error {
	plan := e.opts.Plan
	if ln := e.fds.storedProxy(plan.Proxy); ln != nil {
		e.serveProxy(ln) // connections queued while no daemon ran are served now
		return nil
	}
	addr := net.JoinHostPort(plan.Proxy.Host, strconv.Itoa(plan.Proxy.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return listenError(err, plan.Proxy.Host+":"+strconv.Itoa(plan.Proxy.Port))
	}
	e.serveProxy(ln)
	return nil
}

func (e *Engine) serveProxy(ln net.Listener) {
	e.mu.Lock()
	e.proxyLn = ln
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		e.proxyPort = a.Port
	}
	port := e.proxyPort
	e.mu.Unlock()
	e.fds.storeListener(fdProxy, ln)
	accepting := keepAccepting(ln, "proxy", e.events.log)
	e.serveListener(func() error { return e.proxy.Serve(accepting) }, func(err error) { e.fail(fdProxy, err) })
	e.events.log("proxy listening", jsconfig.Field{Key: "host", Value: e.opts.Plan.Proxy.Host}, jsconfig.Field{Key: "port", Value: port})
}

// exposeControl starts answering on the control socket and starts state
// persistence. A shutdown that began meanwhile wins: the socket goes
// again and the start counts as failed.
func (e *Engine) exposeControl(sock *controlSocket) error {
	e.mu.Lock()
	if e.stopping.Load() {
		e.mu.Unlock()
		sock.listener.Close()
		sock.remove()
		return ErrShuttingDown
	}
	e.socket = sock
	e.mu.Unlock()
	e.fds.storeListener(fdControl, sock.listener)
	accepting := keepAccepting(sock.listener, "control", e.events.log)
	e.serveListener(func() error { return e.server.Serve(accepting) }, func(err error) { e.fail(fdControl, err) })
	e.events.log("control socket listening", jsconfig.Field{Key: "path", Value: sock.path})
	if e.persist != nil && !e.persist.started {
		e.persist.start()
	}
	return nil
}

// notify sends a systemd notification (sd_notify) when $NOTIFY_SOCKET is
// set: "READY=1" once the daemon serves, "STOPPING=1" when it stops.
// Failures are ignored, as nothing waits for them.
func (e *Engine) notify(state string) { _ = sdnotify.Notify(state) }
