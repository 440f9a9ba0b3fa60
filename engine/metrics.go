package engine

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	rbruntime "github.com/rollbridge/rollbridge/runtime"
)

// metrics are the daemon's Prometheus metrics (docs/metrics.md), served in
// the Prometheus text exposition format (version 0.0.4) on
// Options.MetricsAddress. The format is written here rather than with
// client_golang: that library's package initialisers (procfs, protobuf)
// add ~5 ms and ~2.5 MiB to every rollbridge command, metrics or not.
// The tests read the output with the official parser.
//
// On the request path a release's counters are resolved once, so a
// request costs two atomic adds and a histogram observation.
type metrics struct {
	e        *Engine
	requests *counterVec   // release, class
	duration *histogramVec // release
	deploys  *counterVec   // result
	deployT  *histogramVec // result
	health   *histogramVec // result
	restarts *counterVec   // process, reason

	server *http.Server
	ln     net.Listener // the bound listener (tests break it)
}

var (
	requestBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	deployBuckets  = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	healthBuckets  = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

func newMetrics(e *Engine) *metrics {
	return &metrics{
		e:        e,
		requests: newCounterVec("release", "class"),
		duration: newHistogramVec(requestBuckets, "release"),
		deploys:  newCounterVec("result"),
		deployT:  newHistogramVec(deployBuckets, "result"),
		health:   newHistogramVec(healthBuckets, "result"),
		restarts: newCounterVec("process", "reason"),
	}
}

// releaseObserver is the per-release request metrics: what proxy.Target
// calls for each answered request.
type releaseObserver struct {
	classes  [6]*atomic.Int64 // index: status / 100
	duration *histogram
}

func (m *metrics) observer(release string) *releaseObserver {
	o := &releaseObserver{duration: m.duration.with(release)}
	for i := 1; i <= 5; i++ {
		o.classes[i] = m.requests.with(release, strconv.Itoa(i)+"xx")
	}
	return o
}

func (o *releaseObserver) ObserveRequest(status int, elapsed time.Duration) {
	if c := status / 100; c >= 1 && c <= 5 {
		o.classes[c].Add(1)
	}
	if elapsed > 0 {
		o.duration.observe(elapsed.Seconds())
	}
}

func result(err error) string {
	if err != nil {
		return "failure"
	}
	return "success"
}

// serve starts the /metrics listener.
func (m *metrics) serve(addr string) error {
	ln := m.e.fds.storedMetrics(addr)
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return listenError(err, addr)
		}
	}
	m.e.fds.storeListener(fdMetrics, ln)
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(m.exposition())
	})
	m.server = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.ln = ln
	accepting := keepAccepting(ln, "metrics", m.e.events.log)
	// Metrics are not worth the site: a broken metrics listener is
	// logged and the daemon serves on without them.
	m.e.serveListener(func() error { return m.server.Serve(accepting) }, func(err error) {
		m.e.events.log("metrics listener failed", jsconfig.Field{Key: "error", Value: acceptErrorText(err)})
	})
	m.e.events.log("metrics listening", jsconfig.Field{Key: "address", Value: ln.Addr().String()})
	return nil
}

// forget drops the request series of a release the daemon no longer
// retains, so their number follows releaseRetention.
func (m *metrics) forget(release string) {
	if m == nil {
		return
	}
	m.requests.drop(0, release)
	m.duration.drop(0, release)
}

func (m *metrics) close() {
	if m != nil && m.server != nil {
		m.server.Close()
	}
}

// exposition writes every metric in the text format.
func (m *metrics) exposition() []byte {
	var b bytes.Buffer
	e := m.e
	family(&b, "rollbridge_info", "gauge", "Always 1; the labels name the application and the running rollbridge version.")
	sample(&b, "rollbridge_info", []string{"application", "version"}, []string{e.opts.Plan.Application, e.opts.Identity.Version}, 1)

	family(&b, "rollbridge_proxy_requests_total", "counter", "HTTP requests answered by the proxy, by release and status class (1xx-5xx); release is empty for the 503s answered while no release is active.")
	m.requests.write(&b, "rollbridge_proxy_requests_total")
	family(&b, "rollbridge_proxy_request_duration_seconds", "histogram", "Time from a request's arrival at the proxy to the end of its response, by release.")
	m.duration.write(&b, "rollbridge_proxy_request_duration_seconds")

	// What is read at scrape time: releases, connections, process memory.
	type relView struct {
		id, state string
		httpCount int64
		ws        int64
		hasTarget bool
	}
	e.mu.Lock()
	rels := make([]relView, 0, len(e.releases))
	targets := make([]func() (int64, int64), 0, len(e.releases))
	for _, r := range e.releases {
		v := relView{id: r.ID, state: r.getState().String()}
		if r.target != nil {
			v.hasTarget = true
			targets = append(targets, r.target.Connections)
		} else {
			targets = append(targets, nil)
		}
		rels = append(rels, v)
	}
	e.mu.Unlock()
	for i := range rels {
		if targets[i] != nil {
			rels[i].httpCount, rels[i].ws = targets[i]()
		}
	}
	family(&b, "rollbridge_proxy_open_connections", "gauge", "Requests in flight and WebSocket tunnels open through the proxy, by release and kind (http, websocket).")
	for _, v := range rels {
		if v.hasTarget {
			sample(&b, "rollbridge_proxy_open_connections", []string{"release", "kind"}, []string{v.id, "http"}, float64(v.httpCount))
			sample(&b, "rollbridge_proxy_open_connections", []string{"release", "kind"}, []string{v.id, "websocket"}, float64(v.ws))
		}
	}
	// The traffic gate (docs/migrations.md).
	e.mu.Lock()
	paused := e.traffic.pause != nil || e.traffic.deployHold != nil
	maintenance := e.traffic.maintenance != nil
	e.mu.Unlock()
	heldNow, _ := e.proxy.Held()
	gc := e.proxy.Counters()
	family(&b, "rollbridge_traffic_paused", "gauge", "1 while an operator's pause (expired or not) or a deploy's hold is on, else 0.")
	sample(&b, "rollbridge_traffic_paused", nil, nil, boolValue(paused))
	family(&b, "rollbridge_traffic_maintenance", "gauge", "1 while maintenance mode is on, else 0.")
	sample(&b, "rollbridge_traffic_maintenance", nil, nil, boolValue(maintenance))
	family(&b, "rollbridge_held_requests", "gauge", "Requests the proxy holds now (a pause or a deploy's hold).")
	sample(&b, "rollbridge_held_requests", nil, nil, float64(heldNow))
	family(&b, "rollbridge_held_requests_total", "counter", "Requests the proxy held since the daemon started.")
	sample(&b, "rollbridge_held_requests_total", nil, nil, float64(gc.Held))
	family(&b, "rollbridge_gate_refused_total", "counter", "503s the traffic gate answered, by reason: limit (the hold was full), expired (a pause past its --max-pause) or maintenance.")
	for _, reason := range [...]string{"limit", "expired", "maintenance"} {
		sample(&b, "rollbridge_gate_refused_total", []string{"reason"}, []string{reason}, float64(gc.Refused[reason]))
	}

	family(&b, "rollbridge_release_state", "gauge", "1 for the state each retained release is in: active, draining or stopped.")
	for _, v := range rels {
		sample(&b, "rollbridge_release_state", []string{"release", "state"}, []string{v.id, v.state}, 1)
	}

	family(&b, "rollbridge_deploys_total", "counter", "Deploys (rollbacks and a bootstrap included), by result: success or failure.")
	m.deploys.write(&b, "rollbridge_deploys_total")
	family(&b, "rollbridge_deploy_duration_seconds", "histogram", "Time from a deploy's start to its answer, by result.")
	m.deployT.write(&b, "rollbridge_deploy_duration_seconds")
	family(&b, "rollbridge_health_check_duration_seconds", "histogram", "Time a new release's web process took to pass or fail its health check, start delay included, by result.")
	m.health.write(&b, "rollbridge_health_check_duration_seconds")
	family(&b, "rollbridge_process_restarts_total", "counter", "Restarts of managed processes, by process id and reason: crash, memory or manual.")
	m.restarts.write(&b, "rollbridge_process_restarts_total")

	family(&b, "rollbridge_process_resident_memory_bytes", "gauge", "Resident memory of a running managed process and its process group, by instance id and release (empty for services and singletons).")
	for _, in := range e.statusProcesses() {
		release := in.releaseTag()
		if in.daemonWide() {
			release = ""
		}
		if pid := in.proc.PID(); pid != 0 {
			sample(&b, "rollbridge_process_resident_memory_bytes", []string{"process", "release"}, []string{in.id, release}, float64(rbruntime.GroupResidentBytes(pid)))
		}
	}

	// The daemon itself, under the usual names.
	family(&b, "process_resident_memory_bytes", "gauge", "Resident memory of the rollbridge daemon.")
	sample(&b, "process_resident_memory_bytes", nil, nil, float64(selfRSS()))
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		family(&b, "process_open_fds", "gauge", "Open file descriptors of the rollbridge daemon.")
		sample(&b, "process_open_fds", nil, nil, float64(len(fds)))
	}
	family(&b, "go_goroutines", "gauge", "Goroutines of the rollbridge daemon.")
	sample(&b, "go_goroutines", nil, nil, float64(runtime.NumGoroutine()))
	return b.Bytes()
}

// selfRSS is the daemon's own resident memory.
func selfRSS() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func family(b *bytes.Buffer, name, kind, help string) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(help), name, kind)
}

// sample writes one line: name{label="value",…} value.
func sample(b *bytes.Buffer, name string, labels, values []string, v float64) {
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l)
			b.WriteString(`="`)
			b.WriteString(labelEscaper.Replace(values[i]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatValue(v))
	b.WriteByte('\n')
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// vec holds one metric per label combination.
type vec[T any] struct {
	labels []string
	make   func() *T
	mu     sync.Mutex
	series map[string]labelled[T]
}

type labelled[T any] struct {
	values []string
	metric *T
}

func newVec[T any](make func() *T, labels ...string) *vec[T] {
	return &vec[T]{labels: labels, make: make, series: map[string]labelled[T]{}}
}

// with returns the metric of these label values, created on first use.
func (v *vec[T]) with(values ...string) *T {
	key := strings.Join(values, "\xff")
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.series[key]
	if !ok {
		s = labelled[T]{values: values, metric: v.make()}
		v.series[key] = s
	}
	return s.metric
}

// drop removes the series whose label i has value val.
func (v *vec[T]) drop(i int, val string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, s := range v.series {
		if s.values[i] == val {
			delete(v.series, k)
		}
	}
}

// sorted lists the series in a stable order for the exposition.
func (v *vec[T]) sorted() []labelled[T] {
	v.mu.Lock()
	keys := make([]string, 0, len(v.series))
	for k := range v.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]labelled[T], len(keys))
	for i, k := range keys {
		out[i] = v.series[k]
	}
	v.mu.Unlock()
	return out
}

// counterVec is a counter per label combination.
type counterVec struct{ *vec[atomic.Int64] }

func newCounterVec(labels ...string) *counterVec {
	return &counterVec{newVec(func() *atomic.Int64 { return &atomic.Int64{} }, labels...)}
}

func (c *counterVec) inc(values ...string) { c.with(values...).Add(1) }

func (c *counterVec) write(b *bytes.Buffer, name string) {
	for _, s := range c.sorted() {
		sample(b, name, c.labels, s.values, float64(s.metric.Load()))
	}
}

// histogram counts observations into cumulative buckets.
type histogram struct {
	bounds []float64
	counts []atomic.Int64 // per bucket, not cumulative; last is +Inf
	count  atomic.Int64
	sum    atomic.Uint64 // float64 bits
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// histogramVec is a histogram per label combination.
type histogramVec struct{ *vec[histogram] }

func newHistogramVec(bounds []float64, labels ...string) *histogramVec {
	return &histogramVec{newVec(func() *histogram {
		return &histogram{bounds: bounds, counts: make([]atomic.Int64, len(bounds)+1)}
	}, labels...)}
}

func (h *histogramVec) observe(v float64, values ...string) { h.with(values...).observe(v) }

func (h *histogramVec) write(b *bytes.Buffer, name string) {
	labels := append(append([]string(nil), h.labels...), "le")
	for _, s := range h.sorted() {
		hist, values := s.metric, s.values
		var cumulative int64
		for i, bound := range hist.bounds {
			cumulative += hist.counts[i].Load()
			sample(b, name+"_bucket", labels, append(append([]string(nil), values...), formatValue(bound)), float64(cumulative))
		}
		cumulative += hist.counts[len(hist.bounds)].Load()
		sample(b, name+"_bucket", labels, append(append([]string(nil), values...), "+Inf"), float64(cumulative))
		sample(b, name+"_sum", h.labels, values, math.Float64frombits(hist.sum.Load()))
		sample(b, name+"_count", h.labels, values, float64(cumulative))
	}
}

// boolValue is a 0/1 gauge's value.
func boolValue(on bool) float64 {
	if on {
		return 1
	}
	return 0
}
