// Command rollbridge-bench measures rollbridge against the physical limit
// and its peers, on loopback, in one run (docs/benchmarks.md):
//
//	rollbridge-bench [flags] all        proxy, deploys, footprint, takeover, hold, crash
//	rollbridge-bench [flags] proxy      direct vs rollbridge vs nginx vs httputil
//	rollbridge-bench [flags] deploys    failed requests across consecutive deploys
//	rollbridge-bench [flags] footprint  daemon RSS, CPU per 100k requests, CLI latency
//	rollbridge-bench [flags] takeover   failed requests and stalls across consecutive owner takeovers
//	rollbridge-bench [flags] hold       failed requests and added latency across deploys that hold traffic
//	rollbridge-bench [flags] crash      failed requests, stalls and kept processes across daemon SIGKILLs under systemd's fd store
//
// "app" and "httputil" are the helper processes it starts itself.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

var (
	rollbridgeBin = flag.String("rollbridge", "bin/rollbridge", "the rollbridge binary to measure")
	duration      = flag.Duration("duration", 3*time.Second, "length of one load round per target")
	rounds        = flag.Int("rounds", 3, "interleaved rounds per target")
	conns         = flag.Int("conns", 32, "concurrent client connections")
	deploys       = flag.Int("deploys", 50, "deploys under load")
	wsTrips       = flag.Int("ws", 2000, "WebSocket round trips per target")
	takeovers     = flag.Int("takeovers", 20, "consecutive owner takeovers under load")
	holds         = flag.Int("holds", 5, "deploys with --hold-traffic --before-switch 'sleep 2' under load")
	crashCount    = flag.Int("crashes", 5, "daemon SIGKILLs under load, each restarted with systemd's fd store")
	restartDelay  = flag.Duration("restart-delay", time.Second, "time from a daemon's death to its restart (the unit's RestartSec=)")
)

// The takeover load: what nginx's keep-alive pool does to a busy daemon,
// with a client that never repeats a failed request.
const (
	takeoverConns = 64
	takeoverRate  = 1000 // requests per second, all connections together
)

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "rollbridge-bench: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: rollbridge-bench [flags] all|proxy|deploys|footprint|takeover|hold|crash")
		flag.PrintDefaults()
	}
	flag.Parse()
	switch flag.Arg(0) {
	case "app":
		runApp()
		return
	case "httputil":
		runHTTPUtil(flag.Arg(1), flag.Arg(2))
		return
	case "load":
		// load <host:port>: one keep-alive round against any address, for
		// profiling a target by hand.
		res := runLoad(loadSpec{addr: flag.Arg(1), path: "/", conns: *conns, keepAlive: true, duration: *duration})
		ok, failed := res.count()
		fmt.Printf("%d requests (%.0f/s), %d failed, p50 %s, p99 %s\n", ok, res.rps(), failed, ms(res.percentile(50)), ms(res.percentile(99)))
		return
	}
	bin, err := filepath.Abs(*rollbridgeBin)
	if err != nil {
		fatalf("%v", err)
	}
	if _, err := os.Stat(bin); err != nil {
		fatalf("%v (build it with make build)", err)
	}
	*rollbridgeBin = bin
	var rep report
	switch flag.Arg(0) {
	case "all":
		benchProxy(&rep)
		benchDeploys(&rep)
		benchFootprint(&rep)
		benchTakeover(&rep)
		benchHold(&rep)
		benchCrash(&rep)
	case "proxy":
		benchProxy(&rep)
	case "deploys":
		benchDeploys(&rep)
	case "footprint":
		benchFootprint(&rep)
	case "takeover":
		benchTakeover(&rep)
	case "hold":
		benchHold(&rep)
	case "crash":
		benchCrash(&rep)
	default:
		flag.Usage()
		os.Exit(2)
	}
	rep.print()
	if rep.failed {
		os.Exit(1)
	}
}

// report collects the summary table.
type report struct {
	sections []section
	failed   bool // a zero-failure guarantee was broken
}

type section struct {
	title string
	head  []string
	rows  [][]string
	notes []string
}

func (r *report) add(s section) { r.sections = append(r.sections, s) }

func (r *report) print() {
	for _, s := range r.sections {
		fmt.Printf("\n## %s\n\n", s.title)
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, strings.Join(s.head, "\t"))
		for _, row := range s.rows {
			fmt.Fprintln(w, strings.Join(row, "\t"))
		}
		w.Flush()
		for _, n := range s.notes {
			fmt.Println(n)
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func median(d []time.Duration) time.Duration { return durPercentile(d, 50) }

func tempDir() string {
	dir, err := os.MkdirTemp("", "rollbridge-bench-")
	if err != nil {
		fatalf("%v", err)
	}
	return dir
}

// target is one way to reach the app.
type target struct {
	name string
	addr string
	pgid int // whose CPU time is charged to it; 0: none (direct)
}

// targetStats accumulates a target's rounds.
type targetStats struct {
	elapsed  time.Duration
	cpu      time.Duration
	ok       int
	failed   int
	errs     []string
	p50, p99 []time.Duration // per round
	maxRSS   int64
	wsTrips  []time.Duration
	wsErr    string
}

func (t *targetStats) addRound(ok, failed int, elapsed, p50, p99, cpu time.Duration) {
	t.ok += ok
	t.failed += failed
	t.elapsed += elapsed
	t.cpu += cpu
	t.p50 = append(t.p50, p50)
	t.p99 = append(t.p99, p99)
}

func (t *targetStats) rps() float64 { return float64(t.ok) / t.elapsed.Seconds() }

// round drives a target once, with wrk when given, else the Go client.
func round(wrk string, t target, keepAlive bool, st *targetStats) {
	if wrk != "" {
		r, err := runWrk(wrk, t.addr, *conns, keepAlive, *duration)
		if err != nil {
			fatalf("%v", err)
		}
		var cpu time.Duration
		st.addRound(r.requests-r.failed, r.failed, r.elapsed, r.p50, r.p99, cpu)
		return
	}
	res := runLoad(loadSpec{addr: t.addr, path: "/", conns: *conns, keepAlive: keepAlive, duration: *duration})
	ok, failed := res.count()
	st.addRound(ok, failed, res.elapsed, res.percentile(50), res.percentile(99), 0)
	if failed > 0 {
		st.errs = append(st.errs, res.firstErrors())
	}
}

// deployedDaemon starts a daemon in dir and deploys its first release.
func deployedDaemon(dir, release string) *daemon {
	d, err := newDaemon(*rollbridgeBin, dir)
	if err != nil {
		fatalf("daemon: %v", err)
	}
	if err := d.waitReady(); err != nil {
		d.shutdown()
		fatalf("%v", err)
	}
	if _, err := d.deploy(release); err != nil {
		d.shutdown()
		fatalf("%v", err)
	}
	return d
}

// benchProxy compares the targets in interleaved rounds, with and without
// keep-alive, and WebSocket round trips.
func benchProxy(rep *report) {
	dir := tempDir()
	defer os.RemoveAll(dir)
	d := deployedDaemon(dir, "r1")
	defer d.shutdown()
	appPort, err := d.appPort()
	if err != nil {
		fatalf("%v", err)
	}
	self, _ := os.Executable()
	stockPort := freePort()
	stock, err := startGroup(self, nil, "httputil", fmt.Sprintf("127.0.0.1:%d", stockPort), fmt.Sprintf("127.0.0.1:%d", appPort))
	if err != nil {
		fatalf("httputil: %v", err)
	}
	defer stopGroup(stock)
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/ping", stockPort), 10*time.Second); err != nil {
		fatalf("%v", err)
	}
	targets := []target{
		{"direct (the limit)", fmt.Sprintf("127.0.0.1:%d", appPort), 0},
		{"rollbridge", fmt.Sprintf("127.0.0.1:%d", d.port), d.pid()},
	}
	var notes []string
	if bin := findNginx(); bin != "" {
		n, err := startNginx(bin, filepath.Join(dir, "nginx"), appPort)
		if err != nil {
			notes = append(notes, "nginx could not start: "+err.Error())
		} else {
			defer stopGroup(n.cmd)
			targets = append(targets, target{"nginx (1 worker, upstream keepalive)", fmt.Sprintf("127.0.0.1:%d", n.port), n.cmd.Process.Pid})
		}
	} else {
		notes = append(notes, "nginx is not installed (apt-get install nginx): its row is missing.")
	}
	targets = append(targets, target{"httputil.ReverseProxy (defaults)", fmt.Sprintf("127.0.0.1:%d", stockPort), stock.Process.Pid})

	wrk, _ := exec.LookPath("wrk")
	generator := "wrk -t2 (C)"
	if wrk == "" {
		generator = "the built-in Go client (install wrk for lower generator overhead)"
	}
	for _, keepAlive := range []bool{true, false} {
		stats := make([]targetStats, len(targets))
		for r := 0; r < *rounds; r++ {
			for i, t := range targets {
				runLoad(loadSpec{addr: t.addr, path: "/", conns: 4, keepAlive: keepAlive, duration: 200 * time.Millisecond}) // warm-up
				var cpu0 time.Duration
				if t.pgid != 0 {
					cpu0 = groupCPU(t.pgid)
				}
				stopRSS := make(chan int64)
				if t.name == "rollbridge" {
					go sampleRSS(d.pid(), stopRSS)
				}
				round(wrk, t, keepAlive, &stats[i])
				if t.pgid != 0 {
					stats[i].cpu += groupCPU(t.pgid) - cpu0
				}
				if t.name == "rollbridge" {
					stopRSS <- 0
					if rss := <-stopRSS; rss > stats[i].maxRSS {
						stats[i].maxRSS = rss
					}
				}
			}
		}
		if keepAlive {
			for i, t := range targets {
				trips, err := wsRoundTrips(t.addr, *wsTrips)
				stats[i].wsTrips = trips
				if err != nil {
					stats[i].wsErr = err.Error()
				}
			}
		}
		mode := "keep-alive"
		if !keepAlive {
			mode = "a new connection per request"
		}
		s := section{
			title: fmt.Sprintf("Proxy overhead, %s (%d connections, %d interleaved rounds of %v, load from %s)", mode, *conns, *rounds, *duration, generator),
			head:  []string{"target", "requests/s", "× direct", "p50", "p99", "failed", "CPU per 100k"},
		}
		if keepAlive {
			s.head = append(s.head, "WebSocket RTT p50", "p99")
		}
		direct := stats[0].rps()
		for i, t := range targets {
			st := &stats[i]
			cpu := "—"
			if t.pgid != 0 && st.ok > 0 {
				cpu = fmt.Sprintf("%.2f s", st.cpu.Seconds()/float64(st.ok)*100000)
			}
			row := []string{t.name, fmt.Sprintf("%.0f", st.rps()), fmt.Sprintf("%.2f", st.rps()/direct),
				ms(median(st.p50)), ms(median(st.p99)), fmt.Sprintf("%d", st.failed), cpu}
			if keepAlive {
				if st.wsErr != "" {
					row = append(row, "error: "+st.wsErr, "")
				} else {
					row = append(row, ms(durPercentile(st.wsTrips, 50)), ms(durPercentile(st.wsTrips, 99)))
				}
			}
			s.rows = append(s.rows, row)
			if len(st.errs) > 0 {
				s.notes = append(s.notes, fmt.Sprintf("%s failures: %s", t.name, strings.Join(st.errs, "; ")))
			}
		}
		if keepAlive {
			s.notes = append(s.notes, fmt.Sprintf("rollbridge daemon RSS under this load: %s (peak sampled)", mib(stats[1].maxRSS)))
		}
		s.notes = append(s.notes, notes...)
		notes = nil
		rep.add(s)
	}
}

// sampleRSS records the peak RSS of pid until told to stop, then sends it.
func sampleRSS(pid int, stop chan int64) {
	var peak int64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			stop <- peak
			return
		case <-tick.C:
			if r := rssBytes(pid); r > peak {
				peak = r
			}
		}
	}
}

// benchDeploys deploys again and again under constant load and counts
// every failed request.
func benchDeploys(rep *report) {
	dir := tempDir()
	defer os.RemoveAll(dir)
	d := deployedDaemon(dir, "d0")
	defer d.shutdown()
	boot := appBootTime()
	stop := make(chan struct{})
	resCh := make(chan loadResult)
	go func() {
		resCh <- runLoad(loadSpec{addr: fmt.Sprintf("127.0.0.1:%d", d.port), path: "/", conns: 8, mixed: true, stop: stop})
	}()
	time.Sleep(200 * time.Millisecond)
	var walls []time.Duration
	var deployErr error
	for i := 1; i <= *deploys && deployErr == nil; i++ {
		var wall time.Duration
		wall, deployErr = d.deploy(fmt.Sprintf("d%d", i))
		walls = append(walls, wall)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	res := <-resCh
	ok, failed := res.count()
	s := section{
		title: fmt.Sprintf("%d deploys under constant load (8 clients, half keep-alive)", *deploys),
		head:  []string{"requests", "failed", "p50", "p99", "deploy wall time (median)", "app boot (median)", "rollbridge's share"},
		rows: [][]string{{fmt.Sprint(ok + failed), fmt.Sprint(failed), ms(res.percentile(50)), ms(res.percentile(99)),
			ms(median(walls)), ms(boot), ms(median(walls) - boot)}},
	}
	if deployErr != nil {
		s.notes = append(s.notes, "a deploy failed: "+deployErr.Error())
		rep.failed = true
	}
	if failed > 0 {
		s.notes = append(s.notes, "failures: "+res.firstErrors())
		rep.failed = true
	}
	if n := res.retries(); n > 0 {
		s.notes = append(s.notes, fmt.Sprintf("%d requests were repeated after the server closed an idle keep-alive connection (what every HTTP client does)", n))
	}
	rep.add(s)
}

// appBootTime is the median time from spawning the bench app to its first
// answer: the part of a deploy that is the app's, not rollbridge's.
func appBootTime() time.Duration {
	self, _ := os.Executable()
	var times []time.Duration
	for i := 0; i < 5; i++ {
		port := freePort()
		t0 := time.Now()
		cmd, err := startGroup(self, []string{fmt.Sprintf("ROLLBRIDGE_PORT=%d", port)}, "app")
		if err != nil {
			fatalf("app: %v", err)
		}
		err = waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/ping", port), 10*time.Second)
		times = append(times, time.Since(t0))
		stopGroup(cmd)
		if err != nil {
			fatalf("app: %v", err)
		}
	}
	return median(times)
}

// benchFootprint measures the daemon's idle memory and the CLI's latency.
func benchFootprint(rep *report) {
	dir := tempDir()
	defer os.RemoveAll(dir)
	d := deployedDaemon(dir, "f1")
	defer d.shutdown()
	for i := 2; i <= 3; i++ {
		if _, err := d.deploy(fmt.Sprintf("f%d", i)); err != nil {
			fatalf("%v", err)
		}
	}
	time.Sleep(time.Second) // the drains end and the heap settles
	idle := rssBytes(d.pid())
	status := timeCommand(20, *rollbridgeBin, "status", "-c", d.config)
	validate := "—"
	if abs, err := filepath.Abs("examples/tensorbuzz.com.js"); err == nil {
		if _, err := os.Stat(abs); err == nil {
			validate = ms(timeCommand(20, *rollbridgeBin, "validate", "-c", abs))
		}
	}
	version := timeCommand(20, *rollbridgeBin, "--version")
	rep.add(section{
		title: "Footprint",
		head:  []string{"daemon RSS, idle after 3 deploys", "status (whole process, median)", "validate TensorBuzz (whole process, median)", "--version (process start)"},
		rows:  [][]string{{mib(idle), ms(status), validate, ms(version)}},
	})
}

// timeCommand is the median wall time of n runs of a command.
func timeCommand(n int, name string, args ...string) time.Duration {
	var times []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		cmd := exec.Command(name, args...)
		if err := cmd.Run(); err != nil {
			fatalf("%s %s: %v", name, strings.Join(args, " "), err)
		}
		times = append(times, time.Since(t0))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[len(times)/2]
}

// benchTakeover replaces the daemon by a takeover candidate -takeovers
// times in a row, each candidate taking over from the previous one, under
// a paced keep-alive load whose client never repeats a request: every
// request that meets a connection the retiring owner closes counts as
// failed.
func benchTakeover(rep *report) {
	dir := tempDir()
	defer os.RemoveAll(dir)
	owner := deployedDaemon(dir, "t0")
	defer func() { owner.shutdown() }()
	stop := make(chan struct{})
	resCh := make(chan loadResult)
	go func() {
		resCh <- runLoad(loadSpec{addr: fmt.Sprintf("127.0.0.1:%d", owner.port), path: "/", conns: takeoverConns, keepAlive: true,
			rate: takeoverRate, noRetry: true, stop: stop})
	}()
	time.Sleep(time.Second)
	type window struct{ begin, end time.Time }
	var windows []window
	var walls []time.Duration
	var notes []string
	for i := 1; i <= *takeovers; i++ {
		id := fmt.Sprintf("t%d", i)
		rel := filepath.Join(dir, "releases", id)
		os.MkdirAll(rel, 0o755)
		cand := &daemon{bin: owner.bin, dir: dir, config: owner.config, sock: owner.sock, log: &syncWriter{}, port: owner.port}
		begin := time.Now()
		if err := cand.start("--release-path", rel, "--release-id", id, "--revision", id,
			"--boot-attestation", "sha256:"+strings.Repeat("b", 64), "--takeover-owner"); err != nil {
			fatalf("candidate: %v", err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(cand.log.String(), `"message":"control socket listening"`) {
			if time.Now().After(deadline) {
				cand.shutdown()
				fatalf("candidate %s did not take over:\n%s", id, cand.log.String())
			}
			time.Sleep(time.Millisecond)
		}
		end := time.Now()
		windows = append(windows, window{begin, end})
		walls = append(walls, end.Sub(begin))
		// The retired owner exits by itself once its connections are gone.
		exited := make(chan struct{})
		go func(cmd *exec.Cmd) { cmd.Wait(); close(exited) }(owner.cmd)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			notes = append(notes, fmt.Sprintf("the owner retired by %s did not exit", id))
			rep.failed = true
			syscall.Kill(-owner.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		owner.cmd = nil
		owner = cand
		time.Sleep(500 * time.Millisecond) // the new owner alone under load, before it retires in turn
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	res := <-resCh
	var before, during []sample
	var worstDuring, worst time.Duration
	reconnects := 0
	for _, s := range res.samples {
		if s.err == "" && s.dur > worst {
			worst = s.dur
		}
		if s.closed {
			reconnects++
		}
		if len(windows) > 0 && s.start.Before(windows[0].begin) {
			before = append(before, s)
			continue
		}
		for _, w := range windows {
			if !s.start.Before(w.begin) && s.start.Before(w.end.Add(500*time.Millisecond)) {
				during = append(during, s)
				if s.err == "" && s.dur > worstDuring {
					worstDuring = s.dur
				}
				break
			}
		}
	}
	_, failed := res.count()
	base, tail := percentileOf(before, 99), percentileOf(during, 99)
	s := section{
		title: fmt.Sprintf("%d owner takeovers under load (%d keep-alive connections, %d requests/s, no client retries)", len(windows), takeoverConns, takeoverRate),
		head: []string{"requests", "failed", "p99 before", "p99 during takeovers", "added p99", "longest request during takeovers",
			"longest request", "takeover wall time (median)"},
		rows: [][]string{{fmt.Sprint(len(res.samples)), fmt.Sprint(failed), ms(base), ms(tail), ms(tail - base),
			ms(worstDuring), ms(worst), ms(median(walls))}},
	}
	s.notes = append(s.notes, fmt.Sprintf("%d answers carried Connection: close from a retiring owner; the client opened a new connection for its next request", reconnects))
	if failed > 0 {
		s.notes = append(s.notes, "failures: "+res.firstErrors())
		rep.failed = true
	}
	s.notes = append(s.notes, notes...)
	rep.add(s)
}
