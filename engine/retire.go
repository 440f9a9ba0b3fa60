package engine

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/proxy"
)

// CanonicalAttestation reports whether s is sha256: followed by 64
// lowercase hex digits, the only attestation form bootstrap and takeover
// accept.
func CanonicalAttestation(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// retirement is the owner side of a takeover: it runs once.
type retirement struct {
	once sync.Once
	body []byte
	err  error
	done chan struct{} // closed when the retired daemon may exit
}

// retire hands the daemon over to a takeover candidate
// (docs/cli.md#takeover-replacing-the-running-daemon).
// With handoff, the listening proxy and control sockets go to the
// candidate with the reply, so they never stop accepting; this daemon
// lets its open client connections finish within proxy.drainTimeoutMs
// and only then stops its processes. Its singletons stop before the
// reply, so the candidate's never overlap them. Without handoff (what
// the Node.js rollbridge asks) the reference's sequence runs: the
// listeners close and the processes stop at once.
func (e *Engine) retire(conn *control.Conn, attestation string, handoff bool) ([]byte, error) {
	first := false
	e.retirement.once.Do(func() {
		first = true
		e.retirement.body, e.retirement.err = e.runRetire(conn, attestation, handoff)
	})
	if !first && e.retirement.err == nil {
		// A second request shares the result, without the sockets.
		return jsconfig.Object{{Key: "message", Value: "owner retired"}}.MarshalJSON()
	}
	return e.retirement.body, e.retirement.err
}

func (e *Engine) runRetire(conn *control.Conn, attestation string, handoff bool) ([]byte, error) {
	e.mu.Lock()
	if e.stopping.Load() {
		e.mu.Unlock()
		return nil, ErrShuttingDown
	}
	e.stopping.Store(true)
	e.retiredOwner = true
	sock := e.socket
	proxyLn := e.proxyLn
	e.mu.Unlock()
	e.notify("STOPPING=1")
	e.cancel()
	e.ops.close()
	e.metrics.close() // the successor binds the metrics address
	if e.persist != nil {
		// The successor writes the state file from now on; what this
		// daemon still drains and stops is recorded in its sibling file,
		// written before the reply lets the successor start writing.
		e.persist.stopTimer()
		e.persist.useSibling()
	}

	var files []*os.File
	if handoff {
		files = dupListeners(proxyLn, sock)
		handoff = files != nil
	}
	if sock != nil && handoff {
		sock.listener.SetUnlinkOnClose(false)
	}
	e.server.Close(conn)
	procs := e.ownedProcesses()
	// No command changes the traffic state any more: the successor gets
	// the operator's pause and maintenance as they are now (never a
	// deploy's hold: that deploy is aborted).
	var traffic jsconfig.Object
	if handoff {
		traffic = e.trafficObject(true)
	}

	if handoff {
		// Singletons first, so the candidate's start after them.
		e.mu.Lock()
		var singles []*instance
		for _, s := range e.singletons {
			singles = append(singles, s.inst)
		}
		e.mu.Unlock()
		stopAll(singles)
		e.events.log("external owner retired", jsconfig.Field{Key: "attestation", Value: attestation}, jsconfig.Field{Key: "status", Value: "draining"})
		conn.SendFiles(files...)
		conn.AfterReply(func() {
			go func() {
				// New connections queue for the successor from here on.
				grace := e.currentPlan().Proxy.DrainTimeoutMs.Duration()
				if proxyLn != nil {
					// Held requests go on through the port, which only the
					// successor serves now: it holds them too (it applied
					// the pause before it served), or serves them when only
					// a deploy held them here.
					addr := proxyLn.Addr()
					proxyLn.Close()
					if wait := e.passHeldOn(addr); wait > grace {
						grace = wait
					}
				}
				_ = e.proxy.Drain(grace)
				stopAll(procs)
				e.finishRetired()
				close(e.retirement.done)
			}()
		})
		reply := jsconfig.Object{{Key: "message", Value: "owner retired"}, {Key: "handoff", Value: true}}
		if traffic != nil {
			reply = append(reply, jsconfig.Field{Key: "traffic", Value: traffic})
		}
		return reply.MarshalJSON()
	}

	// The reference's order: quiesce, free the socket path and the port,
	// stop everything without waiting for connections.
	quiet := make([]<-chan struct{}, 0, len(procs))
	dones := make([]<-chan struct{}, 0, len(procs))
	for _, in := range procs {
		quiesced, done := in.proc.StopAsync()
		quiet = append(quiet, quiesced)
		dones = append(dones, done)
	}
	for _, q := range quiet {
		<-q
	}
	if sock != nil {
		sock.listener.Close()
		_ = sock.remove()
	}
	if proxyLn != nil {
		proxyLn.Close()
	}
	e.events.log("external owner retired", jsconfig.Field{Key: "attestation", Value: attestation}, jsconfig.Field{Key: "status", Value: "draining"})
	go func() {
		for _, d := range dones {
			<-d
		}
		_ = e.proxy.Shutdown(proxyShutdownAfterRetire)
		e.finishRetired()
		close(e.retirement.done)
	}()
	return jsconfig.Object{{Key: "message", Value: "owner retired"}}.MarshalJSON()
}

// finishRetired ends a retired owner's sibling file once its processes
// stopped: it goes, or keeps only inherited orphans that still run, for
// the successor to adopt.
func (e *Engine) finishRetired() {
	if e.persist == nil {
		return
	}
	if err := e.persist.finish(); err != nil {
		e.events.log("state persist failed", jsconfig.Field{Key: "error", Value: err.Error()})
	}
}

// proxyShutdownAfterRetire bounds the wait for client connections once a
// retired owner's processes are gone (they can only fail by then).
const proxyShutdownAfterRetire = 5 * time.Second

// dupListeners duplicates the listening descriptors for the candidate, or
// returns nil when one is missing.
func dupListeners(proxyLn net.Listener, sock *controlSocket) []*os.File {
	tl, ok := proxyLn.(*net.TCPListener)
	if !ok || sock == nil {
		return nil
	}
	pf, err := tl.File()
	if err != nil {
		return nil
	}
	cf, err := sock.listener.File()
	if err != nil {
		pf.Close()
		return nil
	}
	return []*os.File{pf, cf}
}

// ownedProcesses lists every process the daemon runs.
func (e *Engine) ownedProcesses() []*instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	var procs []*instance
	for _, s := range e.services {
		procs = append(procs, s.inst)
	}
	for _, s := range e.singletons {
		procs = append(procs, s.inst)
	}
	for _, r := range e.releases {
		procs = append(procs, r.procs...)
	}
	for r := range e.starting {
		procs = append(procs, r.procs...)
	}
	for r := range e.retiring {
		procs = append(procs, r.procs...)
	}
	return procs
}

// checkAttestation validates retire-owner's attestation field.
func checkAttestation(req *control.Request) (string, error) {
	att, err := req.RequiredString("attestation")
	if err != nil {
		return "", err
	}
	if !CanonicalAttestation(att) {
		return "", errors.New("Owner retirement attestation must use the canonical sha256:<64 lowercase hex> format")
	}
	return att, nil
}

// relayGrace is how long past a pause's deadline a retired owner keeps the
// requests it passed on open: once the pause expires, the successor
// answers them at once.
const relayGrace = 5 * time.Second

// passHeldOn is a retired owner's last word on its held requests: when
// its gate holds (a pause or a deploy's hold, no maintenance), the proxy
// forwards from now on to addr, its own former listening address, which
// the successor serves, and the held requests go there in arrival order.
// It returns how long those requests may stay open (until the pause's
// deadline at the successor, plus relayGrace; 0 when nothing was passed
// on). An expired pause and maintenance answer the same here as at the
// successor, so they stay as they are.
func (e *Engine) passHeldOn(addr net.Addr) (wait time.Duration) {
	a, ok := addr.(*net.TCPAddr)
	if !ok {
		return 0
	}
	host := a.IP
	if host.IsUnspecified() {
		// Listening on every address: the successor answers on loopback.
		host = net.IPv4(127, 0, 0, 1)
		if a.IP.To4() == nil {
			host = net.IPv6loopback
		}
	}
	e.mu.Lock()
	t := &e.traffic
	expired := t.pause != nil && t.pause.expired
	if t.maintenance != nil || expired || (t.pause == nil && t.deployHold == nil) {
		e.mu.Unlock()
		return 0
	}
	if p := e.clearPauseLocked(); p != nil {
		wait = time.Until(p.deadline()) + relayGrace
	}
	t.deployHold = nil
	e.proxy.SetActive(proxy.NewRelayTarget(host.String(), a.Port, e.proxy))
	released := e.applyGateLocked()
	e.mu.Unlock()
	e.events.log("held requests passed on", jsconfig.Field{Key: "address", Value: net.JoinHostPort(host.String(), strconv.Itoa(a.Port))}, jsconfig.Field{Key: "requests", Value: released})
	return wait
}
