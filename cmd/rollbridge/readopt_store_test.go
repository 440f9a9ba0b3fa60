package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/sdnotify/sdtest"
	"golang.org/x/sys/unix"
)

// storeMax is the fd store's size in these tests, as in the example unit
// (FileDescriptorStoreMax=256).
const storeMax = 256

// storeConfig is readoptConfig on a fixed proxy port (the port a crashed
// daemon's clients keep using) with the web ports beside it, plus a
// process that prints a counter every 50 ms and writes its last value to
// count (to tell which lines were written while no daemon ran).
func storeConfig(state, count string) string {
	from, to := privatePorts()
	return `statePath: ` + strconv.Quote(state) + `,
  proxy: {port: ` + strconv.Itoa(from) + `, drainTimeoutMs: 30000, forceStopTimeoutMs: 5000},
  processes: [
    {id: "beacon", policy: "service", command: "exec FIXTURE -grandchildren 1"},
    {id: "cron", policy: "singleton", command: "exec FIXTURE"},
    {id: "worker", command: "exec FIXTURE", restartDelayMs: 10},
    {id: "counter", outputLines: 2000, command: "i=0; while :; do i=$((i+1)); echo line $i; echo $i >` + count + `; sleep 0.05; done"},
    {id: "web", policy: "proxied", command: "exec FIXTURE -listen", port: {from: ` + strconv.Itoa(from+1) + `, to: ` + strconv.Itoa(to) + `}, health: {intervalMs: 20}}]`
}

// storeDaemon is a daemon started by a harness playing systemd's part:
// it stores its listeners and output pipes, and each d.start() after a
// crash gets them back as LISTEN_FDS.
type storeDaemon struct {
	*testDaemon
	m     *sdtest.Manager
	count string // the counter process's last value
}

// startStoreDaemon starts a daemon under the harness and deploys v1.
func startStoreDaemon(t *testing.T) *storeDaemon {
	t.Helper()
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	d := newTestDaemon(t, storeConfig(filepath.Join(dir, "state.json"), count))
	m, err := sdtest.NewManager(d.dir, storeMax)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() }) // after the daemon's cleanup: it may still send
	d.command = func(args []string) *exec.Cmd { return m.Command(args[0], args[1:]...) }
	d.start()
	t.Cleanup(d.cleanup)
	sd := &storeDaemon{testDaemon: d, m: m, count: count}
	sd.waitReady()
	if r := d.deploy("v1"); r.code != 0 {
		t.Fatalf("deploy: %+v", r)
	}
	return sd
}

// waitReady waits for the READY=1 of the daemon's last start.
func (d *storeDaemon) waitReady() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.m.WaitReady(ctx); err != nil {
		d.t.Fatal(err)
	}
}

// names returns the store's names once every message the daemon sent so
// far has been handled.
func (d *storeDaemon) names() []string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.m.Sync(ctx); err != nil {
		d.t.Fatal(err)
	}
	return d.m.Names()
}

// counter is the counter process's last value, or -1 while the file is
// being rewritten.
func (d *storeDaemon) counter() int {
	data, err := os.ReadFile(d.count)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return -1
	}
	return n
}

// procStartTime is the start time of pid in clock ticks after boot
// (field 22 of /proc/<pid>/stat), as the daemon records it.
func procStartTime(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// outNames are the store names of a process's output pipes.
func outNames(t *testing.T, pid int) []string {
	suffix := strconv.Itoa(pid) + "-" + strconv.FormatUint(procStartTime(t, pid), 10)
	return []string{"out-" + suffix, "err-" + suffix}
}

// steadyLoad is a constant load of raw keep-alive clients through the
// proxy, each sending a request every interval and never repeating one,
// so every request a dead daemon took with it shows as failed.
type steadyLoad struct {
	done     chan struct{}
	wg       sync.WaitGroup
	ok       atomic.Int64
	dials    atomic.Int64
	refused  atomic.Int64
	lastDial []atomic.Int64 // per client: when its connection was opened, unix nanoseconds

	mu       sync.Mutex
	outcomes []outcome
}

// outcome is one request: when it was sent, on which connection (a
// number in dial order, with when that connection was opened), and how it
// ended.
type outcome struct {
	client   int
	conn     int64
	dialedAt time.Time
	sent     time.Time
	took     time.Duration
	err      string // "" for a 200 from the wanted release
	refused  bool   // the connection was refused: no listener
}

func startSteadyLoad(t *testing.T, addr, release string, clients int, interval time.Duration) *steadyLoad {
	l := &steadyLoad{done: make(chan struct{}), lastDial: make([]atomic.Int64, clients)}
	for i := 0; i < clients; i++ {
		l.wg.Add(1)
		go l.client(i, addr, release, interval)
	}
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *steadyLoad) client(i int, addr, release string, interval time.Duration) {
	defer l.wg.Done()
	var c *keepAliveConn
	var conn int64
	var dialedAt time.Time
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	next := time.Now().Add(interval * time.Duration(i) / time.Duration(len(l.lastDial)))
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-l.done:
			t.Stop()
			return
		case <-t.C:
		}
		// A late request does not make the next ones burst.
		if next = next.Add(interval); next.Before(time.Now()) {
			next = time.Now()
		}
		o := outcome{client: i, sent: time.Now()}
		if c == nil {
			var err error
			c, err = dialKeepAlive(addr)
			if err != nil {
				c = nil
				o.err, o.refused = "dial: "+err.Error(), errors.Is(err, syscall.ECONNREFUSED)
				if o.refused {
					l.refused.Add(1)
				}
				l.record(o)
				continue
			}
			conn, dialedAt = l.dials.Add(1), time.Now()
			l.lastDial[i].Store(dialedAt.UnixNano())
		}
		o.conn, o.dialedAt = conn, dialedAt
		code, body, closing, err := c.get("/release")
		o.took = time.Since(o.sent)
		switch {
		case err != nil:
			o.err = err.Error()
		case code != 200 || body != release:
			o.err = fmt.Sprintf("HTTP %d %q", code, body)
		}
		if err != nil || closing {
			c.Close()
			c = nil
		}
		l.record(o)
	}
}

func (l *steadyLoad) record(o outcome) {
	if o.err == "" {
		l.ok.Add(1)
	}
	l.mu.Lock()
	l.outcomes = append(l.outcomes, o)
	l.mu.Unlock()
}

// waitFor waits until n more requests than now have succeeded.
func (l *steadyLoad) waitFor(t *testing.T, what string, n int64) {
	t.Helper()
	before := l.ok.Load()
	waitUntil(t, what, 20*time.Second, func() bool { return l.ok.Load() >= before+n })
}

// waitDialedAfter waits until every client has opened a connection
// after at (and sends its request on it); a refused connection ends the
// test.
func (l *steadyLoad) waitDialedAfter(t *testing.T, at time.Time) {
	t.Helper()
	waitUntil(t, "every client to open a connection while no daemon runs", 10*time.Second, func() bool {
		if n := l.refused.Load(); n > 0 {
			t.Fatalf("%d connections were refused while no daemon ran", n)
		}
		return l.allDialedAfter(at)
	})
}

func (l *steadyLoad) allDialedAfter(at time.Time) bool {
	for i := range l.lastDial {
		if l.lastDial[i].Load() <= at.UnixNano() {
			return false
		}
	}
	return true
}

// stop ends the clients (once) and returns every outcome.
func (l *steadyLoad) stop() []outcome {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.outcomes)
}

// crashFigures is what the clients saw of one daemon crash.
type crashFigures struct {
	requests, failed int
	inFlight         int // failed, sent before the kill
	deadConn         int // failed, sent after it on a connection the dead daemon had accepted
	refused          int
	queued           int           // sent after the kill on a new connection, before the restart, and answered
	longest          time.Duration // the slowest answered request
	problems         []string      // failures the crash does not explain
}

// crashOutcomes sorts the outcomes around a crash: the daemon was
// SIGKILLed at kill and its successor was started at restart. A request
// may fail only on a connection opened before the kill (the dead daemon
// held it), at most once per connection; a refused or failed connection
// opened later is a problem.
func crashOutcomes(outcomes []outcome, kill, restart time.Time) crashFigures {
	var f crashFigures
	failedConns := map[int64]bool{}
	for _, o := range outcomes {
		f.requests++
		if o.err == "" {
			f.longest = max(f.longest, o.took)
			if o.sent.After(kill) && o.sent.Before(restart) && o.dialedAt.After(kill) {
				f.queued++
			}
			continue
		}
		f.failed++
		switch {
		case o.refused:
			f.refused++
			f.problems = append(f.problems, fmt.Sprintf("client %d at %s: %s", o.client, o.sent.Format(time.StampMicro), o.err))
		case o.conn == 0 || !o.dialedAt.Before(kill):
			f.problems = append(f.problems, fmt.Sprintf("client %d, connection %d opened after the kill, at %s: %s", o.client, o.conn, o.sent.Format(time.StampMicro), o.err))
		case failedConns[o.conn]:
			f.problems = append(f.problems, fmt.Sprintf("connection %d failed twice, at %s: %s", o.conn, o.sent.Format(time.StampMicro), o.err))
		case o.sent.Before(kill):
			f.inFlight++
		default:
			f.deadConn++
		}
		failedConns[o.conn] = true
	}
	return f
}

// crash SIGKILLs the daemon, waits until it is gone, and returns when it
// was killed.
func (d *storeDaemon) crash() time.Time {
	kill := time.Now()
	d.crashDaemon()
	return kill
}

// restart starts the daemon again through the harness, with the stored
// descriptors, and waits until it answers.
func (d *storeDaemon) restart() time.Time {
	d.t.Helper()
	at := time.Now()
	d.start()
	d.waitReady()
	return at
}

// assertReadopted checks that status after the restart shows the same
// pids, a re-adoption from the fd store and every process's output
// captured.
func assertReadopted(t *testing.T, d *storeDaemon, before map[string]int) map[string]any {
	t.Helper()
	s := d.status()
	if after := pidsOf(s); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("pids after the restart %v, before %v", after, before)
	}
	ro, _ := s["readoption"].(map[string]any)
	if ro == nil || ro["fdStore"] != true || ro["processes"] != float64(len(before)) || fmt.Sprint(ro["releases"]) != "[v1]" || ro["refused"] != nil {
		t.Fatalf("readoption %v", s["readoption"])
	}
	var entries []map[string]any
	for _, p := range release(s, "v1")["processes"].([]any) {
		entries = append(entries, p.(map[string]any))
	}
	for _, key := range []string{"services", "singletons"} {
		for _, e := range s[key].([]any) {
			entries = append(entries, e.(map[string]any)["process"].(map[string]any))
		}
	}
	for _, p := range entries {
		if _, lost := p["outputCaptured"]; lost || p["adoptedAt"] == nil || p["state"] != "running" {
			t.Fatalf("%v after a re-adoption from the store: adoptedAt %v, outputCaptured %v, state %v", p["id"], p["adoptedAt"], p["outputCaptured"], p["state"])
		}
	}
	return s
}

// A daemon SIGKILLed under constant load and restarted by its service
// manager with the stored descriptors serves the same release from the
// same processes; connections that arrived while no daemon ran waited in
// the proxy socket's backlog and were answered; no connection was
// refused, and the only failed requests are those on connections the
// dead daemon held (at most one per connection).
func TestReadoptFromTheStoreUnderLoad(t *testing.T) {
	d := startStoreDaemon(t)
	before := pidsOf(d.status())
	if len(before) != 5 {
		t.Fatalf("pids before the crash: %v", before)
	}
	names := d.names()
	for _, want := range []string{"proxy", "control"} {
		if !slices.Contains(names, want) {
			t.Fatalf("%q is not in the store: %v", want, names)
		}
	}
	const clients = 8
	load := startSteadyLoad(t, "127.0.0.1:"+strconv.Itoa(d.port), "v1", clients, 20*time.Millisecond)
	load.waitFor(t, "the load to run", 100)

	kill := d.crash()
	// Every client has a request waiting in the backlog before the
	// successor starts.
	load.waitDialedAfter(t, kill)
	restart := d.restart()
	assertReadopted(t, d, before)
	if !sawEvent(d.testDaemon, "fd store restored", nil) {
		t.Fatalf("no fd store restored event:\n%s", d.stdout.String())
	}
	load.waitFor(t, "requests after the restart", 100)
	f := crashOutcomes(load.stop(), kill, restart)
	t.Logf("%d requests, %d failed (%d in flight at the kill, %d sent afterwards on a connection the dead daemon held), %d refused, %d queued in the backlog while no daemon ran and answered, longest answered request %v; %v from the kill to the successor's start",
		f.requests, f.failed, f.inFlight, f.deadConn, f.refused, f.queued, f.longest.Round(time.Millisecond), restart.Sub(kill).Round(time.Millisecond))
	for _, p := range f.problems {
		t.Errorf("a failure the crash does not explain: %s", p)
	}
	if f.failed > clients {
		t.Errorf("%d requests failed, more than the %d client connections", f.failed, clients)
	}
	if f.queued < clients {
		t.Errorf("%d requests sent on new connections while no daemon ran were answered, want one per client (%d)", f.queued, clients)
	}
}

// logLines returns the counter lines `rollbridge logs` shows, by number.
func (d *storeDaemon) logLines() map[int]bool {
	d.t.Helper()
	r := d.cli("logs", "--process", "counter", "--json")
	if r.code != 0 {
		d.t.Fatalf("logs: %+v", r)
	}
	var sources []struct {
		Logs []struct{ Line string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &sources); err != nil || len(sources) != 1 {
		d.t.Fatalf("logs answered %q (%v)", r.stdout, err)
	}
	out := map[int]bool{}
	for _, l := range sources[0].Logs {
		if n, err := strconv.Atoi(strings.TrimPrefix(l.Line, "line ")); err == nil {
			out[n] = true
		}
	}
	return out
}

// After a crash, `rollbridge logs` shows what a process wrote while no
// daemon ran (the lines waited in its output pipe, which the store kept
// open) and what it wrote after the restart.
func TestReadoptFromTheStoreKeepsOutput(t *testing.T) {
	d := startStoreDaemon(t)
	before := pidsOf(d.status())
	waitUntil(t, "the counter's output", 10*time.Second, func() bool { return len(d.logLines()) >= 5 })
	d.crash()
	var gapFrom, gapTo int
	waitUntil(t, "the counter to be read after the kill", 5*time.Second, func() bool { gapFrom = d.counter(); return gapFrom > 0 })
	// Half a second of output with no daemon reading it.
	waitUntil(t, "the counter to print while no daemon runs", 10*time.Second, func() bool { gapTo = d.counter(); return gapTo >= gapFrom+10 })
	d.restart()
	assertReadopted(t, d, before)
	var after int
	waitUntil(t, "the counter to be read after the restart", 5*time.Second, func() bool { after = d.counter(); return after > 0 })
	var lines map[int]bool
	waitUntil(t, "lines written after the restart in logs", 10*time.Second, func() bool { lines = d.logLines(); return lines[after+5] })
	for n := gapFrom + 1; n <= gapTo; n++ {
		if !lines[n] {
			t.Fatalf("line %d, written while no daemon ran (lines %d-%d), is not in logs; logs hold %v", n, gapFrom+1, gapTo, sortedKeys(lines))
		}
	}
	// Nothing between the oldest line the successor read and the newest
	// is missing.
	keys := sortedKeys(lines)
	for i := 1; i < len(keys); i++ {
		if keys[i] != keys[i-1]+1 {
			t.Fatalf("logs skip from line %d to %d", keys[i-1], keys[i])
		}
	}
	t.Logf("logs after the restart hold lines %d-%d; %d-%d were written while no daemon ran", keys[0], keys[len(keys)-1], gapFrom+1, gapTo)
}

func sortedKeys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// WebSockets are connections inside the daemon: they end with it. Once
// the successor runs, new ones open at once on the same web process, and
// plain requests behave as in TestReadoptFromTheStoreUnderLoad.
func TestReadoptFromTheStoreWithWebSockets(t *testing.T) {
	d := startStoreDaemon(t)
	before := pidsOf(d.status())
	var sockets []*wsConn
	for i := 0; i < 4; i++ {
		ws, hello := d.openWebSocket()
		if hello != "hello v1" {
			t.Fatalf("greeting %q", hello)
		}
		sockets = append(sockets, ws)
	}
	const clients = 4
	load := startSteadyLoad(t, "127.0.0.1:"+strconv.Itoa(d.port), "v1", clients, 20*time.Millisecond)
	load.waitFor(t, "the load to run", 50)
	kill := d.crash()
	for i, ws := range sockets {
		ws.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := ws.Write([]byte("ping\n")); err == nil {
			if line, err := ws.r.ReadString('\n'); err == nil {
				t.Fatalf("WebSocket %d still echoes %q after the daemon died", i, line)
			}
		}
		ws.Close()
	}
	load.waitDialedAfter(t, kill)
	restart := d.restart()
	assertReadopted(t, d, before)
	for i := 0; i < 4; i++ {
		ws, hello := d.openWebSocket()
		if hello != "hello v1" {
			t.Fatalf("greeting after the restart %q", hello)
		}
		ws.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := ws.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if line, err := ws.r.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("echo after the restart %q %v", line, err)
		}
		ws.Close()
	}
	if web := processEntry(release(d.status(), "v1")["processes"], "web"); int(web["pid"].(float64)) != before["v1/web"] {
		t.Fatalf("the WebSockets reached web pid %v, not the re-adopted %d", web["pid"], before["v1/web"])
	}
	load.waitFor(t, "requests after the restart", 50)
	f := crashOutcomes(load.stop(), kill, restart)
	t.Logf("%d requests, %d failed (%d in flight, %d on dead connections), %d refused, %d queued and answered, longest %v",
		f.requests, f.failed, f.inFlight, f.deadConn, f.refused, f.queued, f.longest.Round(time.Millisecond))
	for _, p := range f.problems {
		t.Errorf("a failure the crash does not explain: %s", p)
	}
	if f.queued < clients {
		t.Errorf("%d requests queued while no daemon ran were answered, want %d", f.queued, clients)
	}
}

// The daemon keeps the store to what a successor can use: the output
// pipes of a process that exited leave it (FDSTOREREMOVE), and a listener
// that failed is removed before the daemon exits, so the next start binds
// it anew instead of getting the broken one back.
func TestFDStoreRemovesWhatIsGone(t *testing.T) {
	d := startStoreDaemon(t)
	worker := pidsOf(d.status())["v1/worker"]
	old := outNames(t, worker)
	waitUntil(t, "the worker's pipes in the store", 5*time.Second, func() bool {
		names := d.names()
		return slices.Contains(names, old[0]) && slices.Contains(names, old[1])
	})
	syscall.Kill(-worker, syscall.SIGKILL)
	var restarted int
	waitUntil(t, "the worker to be restarted", 10*time.Second, func() bool {
		p := processEntry(release(d.status(), "v1")["processes"], "worker")
		pid, _ := p["pid"].(float64)
		restarted = int(pid)
		return restarted != 0 && restarted != worker && p["state"] == "running"
	})
	current := outNames(t, restarted)
	waitUntil(t, "the exited worker's pipes to leave the store", 5*time.Second, func() bool {
		names := d.names()
		return !slices.Contains(names, old[0]) && !slices.Contains(names, old[1]) &&
			slices.Contains(names, current[0]) && slices.Contains(names, current[1])
	})
	if n := strings.Count(strings.Join(d.names(), "\n"), "out-"); n != 5 {
		t.Fatalf("%d stdout pipes in the store for 5 processes: %v", n, d.names())
	}

	// shutdown(2) on the stored proxy socket (the same socket as the
	// daemon's) makes its accept fail for good.
	var proxy *os.File
	for _, e := range d.m.Store() {
		if e.Name == "proxy" {
			proxy = e.File
		}
	}
	if proxy == nil {
		t.Fatalf("no proxy in the store: %v", d.names())
	}
	raw, err := proxy.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) })
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon did not exit after its proxy listener failed:\n%s", d.stdout.String())
	}
	if !sawEvent(d.testDaemon, "listener failed", map[string]string{"listener": "proxy"}) {
		t.Fatalf("no listener failed event:\n%s", d.stdout.String())
	}
	if names := d.names(); slices.Contains(names, "proxy") {
		t.Fatalf("the failed proxy listener is still in the store: %v", names)
	}
}
