package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sample is one request: when it started, how long it took, and whether
// it failed.
type sample struct {
	start time.Time
	dur   time.Duration
	err   string // "" for a 2xx answer
	// retried: the server had closed this keep-alive connection; the
	// request was repeated on a new one, as HTTP clients do.
	retried bool
	// closed: the answer carried Connection: close, so the next request
	// went out on a new connection.
	closed bool
	// dialed: when the connection the request went out on was opened,
	// and sent: when the request was written to it (open-loop load only;
	// zero when no connection could be opened).
	dialed, sent time.Time
}

// loadResult is what a load run saw.
type loadResult struct {
	samples []sample
	elapsed time.Duration
}

func (r loadResult) count() (ok, failed int) {
	for _, s := range r.samples {
		switch {
		case s.retried:
		case s.err == "":
			ok++
		default:
			failed++
		}
	}
	return
}

// retries counts requests repeated after a closed keep-alive connection.
func (r loadResult) retries() int {
	n := 0
	for _, s := range r.samples {
		if s.retried {
			n++
		}
	}
	return n
}

func (r loadResult) rps() float64 {
	ok, _ := r.count()
	return float64(ok) / r.elapsed.Seconds()
}

// percentile of the successful requests' latencies, p in [0, 100].
func (r loadResult) percentile(p float64) time.Duration {
	return percentileOf(r.samples, p)
}

func percentileOf(samples []sample, p float64) time.Duration {
	var d []time.Duration
	for _, s := range samples {
		if s.err == "" && !s.retried {
			d = append(d, s.dur)
		}
	}
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(float64(len(d)-1) * p / 100)
	return d[i]
}

// firstErrors summarises the failures by kind.
func (r loadResult) firstErrors() string {
	kinds := map[string]int{}
	for _, s := range r.samples {
		if s.err != "" && !s.retried {
			kinds[s.err]++
		}
	}
	var parts []string
	for k, n := range kinds {
		parts = append(parts, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// loadSpec describes a load run.
type loadSpec struct {
	addr      string // host:port
	path      string
	conns     int
	keepAlive bool
	// mixed: half the connections keep alive, half open one per request.
	mixed bool
	// rate paces the run to this many requests per second in all, spread
	// evenly over the connections; 0: as fast as they are answered.
	rate float64
	// noRetry counts a request that failed on a keep-alive connection the
	// server had closed as a failure, instead of repeating it on a new
	// connection the way HTTP clients do: it exposes every server-side
	// close of a connection with a request on the way.
	noRetry bool
	// Either a duration or a stop channel ends the run.
	duration time.Duration
	stop     <-chan struct{}
}

// runLoad keeps conns clients busy and records every request. The client
// is a minimal HTTP/1.1 one (write the request, parse the answer), so the
// generator spends little CPU next to what it measures.
func runLoad(spec loadSpec) loadResult {
	var wg sync.WaitGroup
	var done atomic.Bool
	per := make([][]sample, spec.conns)
	start := time.Now()
	for i := 0; i < spec.conns; i++ {
		keep := spec.keepAlive
		if spec.mixed {
			keep = i%2 == 0
		}
		var interval, phase time.Duration
		if spec.rate > 0 {
			interval = time.Duration(float64(spec.conns) / spec.rate * float64(time.Second))
			phase = interval * time.Duration(i) / time.Duration(spec.conns)
		}
		wg.Add(1)
		go func(i int, keep bool) {
			defer wg.Done()
			per[i] = clientLoop(spec.addr, spec.path, keep, !spec.noRetry, start.Add(phase), interval, &done)
		}(i, keep)
	}
	if spec.stop != nil {
		<-spec.stop
	} else {
		time.Sleep(spec.duration)
	}
	done.Store(true)
	wg.Wait()
	res := loadResult{elapsed: time.Since(start)}
	for _, s := range per {
		res.samples = append(res.samples, s...)
	}
	return res
}

// clientLoop sends requests one after the other on one connection (a new
// one per request without keepAlive). With an interval, request k starts
// at first + k×interval, or at once when the previous one ran late.
func clientLoop(addr, path string, keepAlive, retry bool, first time.Time, interval time.Duration, done *atomic.Bool) []sample {
	req := "GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n"
	if !keepAlive {
		req = "GET " + path + " HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
	}
	samples := make([]sample, 0, 1<<14)
	var conn net.Conn
	var br *bufio.Reader
	next := first
	for !done.Load() {
		if interval > 0 {
			time.Sleep(time.Until(next))
			next = next.Add(interval)
			if done.Load() {
				break
			}
		}
		t0 := time.Now()
		reused := conn != nil
		closed := false
		err := func() error {
			if conn == nil {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return err
				}
				conn, br = c, bufio.NewReaderSize(c, 4096)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			resp, err := exchange(conn, br, req)
			if err != nil {
				return err
			}
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			if !keepAlive || resp.Close {
				closed = keepAlive
				conn.Close()
				conn = nil
			}
			return nil
		}()
		if err != nil && conn != nil {
			conn.Close()
			conn = nil
		}
		if err != nil && retry && reused && isClosedIdle(err) {
			// The server closed a keep-alive connection between requests:
			// every HTTP client repeats that on a new connection.
			samples = append(samples, sample{start: t0, dur: time.Since(t0), err: errorKind(err), retried: true})
			continue
		}
		s := sample{start: t0, dur: time.Since(t0), closed: closed}
		if err != nil {
			s.err = errorKind(err)
		}
		samples = append(samples, s)
	}
	if conn != nil {
		conn.Close()
	}
	return samples
}

// exchange writes req on c and reads the whole answer from br, c's reader.
func exchange(c net.Conn, br *bufio.Reader, req string) (*http.Response, error) {
	if _, err := io.WriteString(c, req); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, err
}

// isClosedIdle reports an error of a request on a reused connection that
// the server had closed before any answer (EOF or reset).
func isClosedIdle(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

func errorKind(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "connection reset"):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case strings.Contains(msg, "timeout"):
		return "timeout"
	}
	return msg
}

// wsRoundTrips opens an upgraded connection to /ws through addr and
// measures n line round trips.
func wsRoundTrips(addr string, n int) ([]time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("upgrade answered %d", resp.StatusCode)
	}
	out := make([]time.Duration, 0, n)
	msg := []byte("ping 0123456789abcdef\n")
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return out, err
		}
		if _, err := br.ReadBytes('\n'); err != nil {
			return out, err
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

func durPercentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p/100)]
}

// newStockProxy is httputil.ReverseProxy with its defaults.
func newStockProxy(target string) http.Handler {
	u, err := url.Parse("http://" + target)
	if err != nil {
		fatalf("httputil target: %v", err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	return rp
}

// wrkResult is one wrk run.
type wrkResult struct {
	requests int
	failed   int // socket errors and non-2xx/3xx answers
	rps      float64
	p50, p99 time.Duration
	elapsed  time.Duration
}

var (
	wrkReqs    = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(us|ms|s|m)`)
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)`)
	wrkSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// runWrk drives addr with wrk, the C load generator, which needs less CPU
// per request than any Go client: on a small machine the generator
// competes with what it measures.
func runWrk(bin, addr string, conns int, keepAlive bool, d time.Duration) (wrkResult, error) {
	secs := max(1, int(d.Round(time.Second).Seconds())) // wrk takes whole seconds
	args := []string{"-t2", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(secs) + "s", "--latency"}
	if !keepAlive {
		args = append(args, "-H", "Connection: close")
	}
	out, err := exec.Command(bin, append(args, "http://"+addr+"/")...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	text := string(out)
	var r wrkResult
	if m := wrkReqs.FindStringSubmatch(text); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
		r.elapsed = parseWrkDuration(m[2], m[3])
	}
	if m := wrkRPS.FindStringSubmatch(text); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range wrkPct.FindAllStringSubmatch(text, -1) {
		if m[1] == "50" {
			r.p50 = parseWrkDuration(m[2], m[3])
		} else {
			r.p99 = parseWrkDuration(m[2], m[3])
		}
	}
	if m := wrkSockErr.FindStringSubmatch(text); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.failed += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(text); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.failed += n
	}
	if r.requests == 0 {
		return r, fmt.Errorf("wrk output not understood: %s", text)
	}
	return r, nil
}

func parseWrkDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	case "m":
		return time.Duration(f * float64(time.Minute))
	}
	return time.Duration(f * float64(time.Second))
}
