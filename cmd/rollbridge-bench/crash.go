package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge/sdnotify/sdtest"
)

// The crash load is the takeover's rate as an open loop (requests keep
// coming while no daemon runs, as nginx keeps forwarding them), over
// keep-alive connections like nginx's upstream keepalive.
const (
	crashRate      = takeoverRate
	crashIdleConns = takeoverConns
	// crashStoreMax is the unit's FileDescriptorStoreMax= in the examples.
	crashStoreMax = 256
	// crashCalm is the stretch before each kill whose requests give the
	// load's normal latency; crashSettle is the load alone after each
	// restart.
	crashCalm   = time.Second
	crashSettle = 3 * time.Second
)

// crashSpan is one crash: the SIGKILL and READY=1 from the successor.
type crashSpan struct{ kill, ready time.Time }

// crashWindow is what the requests around one crash saw.
type crashWindow struct {
	// out counts the requests that had been sent when the daemon was
	// killed and were not answered yet: those on a connection it had
	// accepted fail, those still in the backlog are answered later.
	out int
	// inFlight counts the failed requests that were out when the daemon
	// was killed, on a connection it held.
	inFlight int
	// deadConn counts the failed requests sent after the kill on a
	// keep-alive connection the dead daemon held (a client like nginx
	// repeats such an idempotent request on a new connection).
	deadConn int
	// queued counts the answered requests sent while no daemon ran on a
	// connection opened meanwhile: they waited in the proxy socket's
	// backlog.
	queued int
	// stall is the slowest answered request from the calm stretch before
	// the kill until the calm stretch before the next one.
	stall time.Duration
}

// crashFigures is what one crash run saw.
type crashFigures struct {
	requests, failed, refused int
	// unexplained counts failures that are not a request on a connection
	// a killed daemon held (refused connections included).
	unexplained int
	// baseline is the median latency of the answered requests in the calm
	// stretches before the kills.
	baseline time.Duration
	windows  []crashWindow
}

// computeCrashFigures sorts the samples around the crashes. A failed
// request is explained by the last kill before it ended when its
// connection was opened before that kill: it was in flight at the kill
// when it was sent before it, else it met the dead connection afterwards.
// Every other failure, and every refused connection, is unexplained.
func computeCrashFigures(samples []sample, crashes []crashSpan, calm time.Duration) crashFigures {
	f := crashFigures{windows: make([]crashWindow, len(crashes))}
	var base []time.Duration
	for _, s := range samples {
		f.requests++
		end := s.start.Add(s.dur)
		// i: the last crash whose kill came before the request ended.
		i := sort.Search(len(crashes), func(k int) bool { return crashes[k].kill.After(end) }) - 1
		if i >= 0 && !s.sent.IsZero() && s.sent.Before(crashes[i].kill) {
			f.windows[i].out++
		}
		if s.err != "" {
			f.failed++
			switch {
			case s.err == "connection refused":
				f.refused++
				f.unexplained++
			case i < 0 || s.dialed.IsZero() || !s.dialed.Before(crashes[i].kill):
				f.unexplained++
			case s.sent.Before(crashes[i].kill):
				f.windows[i].inFlight++
			default:
				f.windows[i].deadConn++
			}
			continue
		}
		// w: the crash whose window (from the calm stretch before its kill
		// to the calm stretch before the next kill) the request started in.
		w := sort.Search(len(crashes), func(k int) bool { return crashes[k].kill.Add(-calm).After(s.start) }) - 1
		if w < 0 {
			continue // the warm-up
		}
		if s.start.Before(crashes[w].kill) {
			base = append(base, s.dur)
		}
		win := &f.windows[w]
		win.stall = max(win.stall, s.dur)
		c := crashes[w]
		if s.dialed.After(c.kill) && s.start.Before(c.ready) {
			win.queued++
		}
	}
	if len(base) > 0 {
		sort.Slice(base, func(i, j int) bool { return base[i] < base[j] })
		f.baseline = base[(len(base)-1)/2]
	}
	return f
}

// crashConfig is the bench app as the web process of a release, with a
// worker beside it, on a fixed proxy port and with a state file, which a
// re-adoption needs.
func crashConfig(dir, self string, port int) string {
	return fmt.Sprintf(`export default {
  application: "bench",
  control: {path: %q},
  statePath: %q,
  proxy: {port: %d, drainTimeoutMs: 5000},
  processes: [
    {id: "worker", command: "exec sleep 86400"},
    {id: "web", policy: "proxied", command: %q, port: {from: 41000, to: 41999}, health: {intervalMs: 5}}
  ]
};
`, filepath.Join(dir, "rb.sock"), filepath.Join(dir, "state.json"), port, "exec "+self+" app")
}

// startUnder starts the daemon the way the harness, playing systemd,
// starts the unit: its notify socket and the stored descriptors.
func (d *daemon) startUnder(m *sdtest.Manager) error {
	cmd := m.Command(d.bin, "daemon", "-c", d.config)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = d.log, os.Stderr
	err := cmd.Start()
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
	if err != nil {
		return err
	}
	d.cmd = cmd
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		return fmt.Errorf("%w; the daemon's log:\n%s", err, d.log.String())
	}
	return nil
}

// managedPids maps "<release>/<process>" to the pid status shows, and
// tells whether status reports a re-adoption from the fd store.
func (d *daemon) managedPids() (map[string]int, bool, error) {
	out, err := d.cli("status")
	if err != nil {
		return nil, false, err
	}
	var s struct {
		Readoption *struct {
			FDStore bool `json:"fdStore"`
		} `json:"readoption"`
		Releases []struct {
			ReleaseID string `json:"releaseId"`
			Processes []struct {
				ID  string `json:"id"`
				Pid int    `json:"pid"`
			} `json:"processes"`
		} `json:"releases"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, false, err
	}
	pids := map[string]int{}
	for _, r := range s.Releases {
		for _, p := range r.Processes {
			if p.Pid != 0 {
				pids[r.ReleaseID+"/"+p.ID] = p.Pid
			}
		}
	}
	return pids, s.Readoption != nil && s.Readoption.FDStore, nil
}

// benchCrash SIGKILLs the daemon -crashes times under an open-loop load,
// each time restarting it through the harness with the stored listeners
// and pipes after -restart-delay (the unit's RestartSec=), and reports
// what clients saw: failures only on connections the dead daemon held,
// no refused connection, the longest stall, and the same processes
// before and after each crash.
func benchCrash(rep *report) {
	dir := tempDir()
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	m, err := sdtest.NewManager(dir, crashStoreMax)
	if err != nil {
		fatalf("%v", err)
	}
	defer m.Close()
	port := freePort()
	d := &daemon{bin: *rollbridgeBin, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), log: &syncWriter{}}
	if err := os.WriteFile(d.config, []byte(crashConfig(dir, self, port)), 0o644); err != nil {
		fatalf("%v", err)
	}
	if err := d.startUnder(m); err != nil {
		fatalf("daemon: %v", err)
	}
	defer func() { d.shutdown() }()
	if err := d.waitReady(); err != nil {
		fatalf("%v", err)
	}
	if _, err := d.deploy("c0"); err != nil {
		fatalf("%v", err)
	}
	finishLoad := startOpenLoop(openLoad{addr: fmt.Sprintf("127.0.0.1:%d", d.port), path: "/", rate: crashRate,
		idle: crashIdleConns, timeout: 60 * time.Second})
	time.Sleep(crashCalm + time.Second) // a second of warm-up, then the first calm stretch
	var crashes []crashSpan
	var kept []bool
	var notes []string
	for i := 1; i <= *crashCount; i++ {
		before, _, err := d.managedPids()
		if err != nil {
			notes = append(notes, fmt.Sprintf("crash %d: status before the kill: %v", i, err))
			rep.failed = true
			break
		}
		var c crashSpan
		c.kill = time.Now()
		syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL)
		d.cmd.Wait()
		d.cmd = nil               // reaped: its pid may name another process from now on
		time.Sleep(*restartDelay) // the unit's RestartSec=: the fault's length, not a synchronisation
		if err := d.startUnder(m); err != nil {
			notes = append(notes, fmt.Sprintf("crash %d: the restart failed: %v", i, err))
			rep.failed = true
			if d.cmd != nil && d.cmd.Process != nil {
				syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
				d.cmd.Wait()
			}
			d.cmd = nil
			// No daemon will stop what the dead one started: each
			// process leads its own group.
			for _, pid := range before {
				syscall.Kill(-pid, syscall.SIGKILL)
			}
			break
		}
		c.ready = time.Now()
		crashes = append(crashes, c)
		after, fromStore, err := d.managedPids()
		same := err == nil && len(before) > 0 && fmt.Sprint(before) == fmt.Sprint(after)
		kept = append(kept, same)
		if !same {
			notes = append(notes, fmt.Sprintf("crash %d: processes before %v, after %v (%v)", i, before, after, err))
			rep.failed = true
		}
		if !fromStore {
			notes = append(notes, fmt.Sprintf("crash %d: status does not report a re-adoption with the fd store", i))
			rep.failed = true
		}
		time.Sleep(crashSettle)
	}
	res := finishLoad()
	f := computeCrashFigures(res.samples, crashes, crashCalm)
	s := section{
		title: fmt.Sprintf("%d daemon SIGKILLs under load, restarted by a harness playing systemd after %v (open loop, %d requests/s, keep-alive, no client retries)",
			len(crashes), *restartDelay, crashRate),
		head: []string{"crash", "kill to READY=1", "requests out at the kill", "failed of them", "failed later on a dead connection",
			"queued in the backlog and answered", "longest request", "processes kept"},
	}
	var total crashWindow
	var readies []time.Duration
	allKept := 0
	for i, w := range f.windows {
		ready := crashes[i].ready.Sub(crashes[i].kill)
		readies = append(readies, ready)
		s.rows = append(s.rows, []string{fmt.Sprint(i + 1), ms(ready), fmt.Sprint(w.out), fmt.Sprint(w.inFlight), fmt.Sprint(w.deadConn), fmt.Sprint(w.queued),
			ms(w.stall), yesNo(kept[i])})
		total.out += w.out
		total.inFlight += w.inFlight
		total.deadConn += w.deadConn
		total.queued += w.queued
		total.stall = max(total.stall, w.stall)
		if kept[i] {
			allKept++
		}
	}
	s.rows = append(s.rows, []string{"all", ms(median(readies)) + " (median)", fmt.Sprint(total.out), fmt.Sprint(total.inFlight), fmt.Sprint(total.deadConn),
		fmt.Sprint(total.queued), ms(total.stall), fmt.Sprintf("%d of %d", allKept, len(kept))})
	s.notes = append(s.notes, fmt.Sprintf("%d requests, %d failed, %d connections refused, %d failures not explained by a kill; median latency in the second before each kill %s; load average %s",
		f.requests, f.failed, f.refused, f.unexplained, ms(f.baseline), loadAverage()))
	if f.refused > 0 || f.unexplained > 0 {
		s.notes = append(s.notes, "failures: "+res.firstErrors())
		rep.failed = true
	}
	s.notes = append(s.notes, notes...)
	rep.add(s)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// loadAverage is the 1-minute load average, for the reader to judge how
// busy the machine was.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(data))[0]
}
