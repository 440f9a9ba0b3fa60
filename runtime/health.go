package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// HealthCheck is the readiness probe of a proxied process
// (docs/processes.md#7-health-checks).
type HealthCheck struct {
	Host       string // proxy.upstreamHost; IPv6 literals are bracketed
	Port       int
	Path       string
	Timeout    time.Duration // the whole window, after StartDelay
	Interval   time.Duration
	StartDelay time.Duration
	// GiveUp, when closed, ends the window early: waiting longer cannot
	// help (the probed process exited for good). One last probe still
	// runs, so the reason is that of a probe, as at the end of the window.
	GiveUp <-chan struct{}
}

// URL is the probed URL, http://<host>:<port><path>.
func (h HealthCheck) URL() string {
	return "http://" + net.JoinHostPort(h.Host, strconv.Itoa(h.Port)) + h.Path
}

// HealthError is a failed health check.
type HealthError struct {
	URL    string
	Reason string // "HTTP 503", "connection refused", "timeout after 1000ms", "no attempts", …
}

func (e *HealthError) Error() string { return "Health check failed for " + e.URL + ": " + e.Reason }

// minProbeTimeout is the floor of a single probe's timeout.
const minProbeTimeout = time.Second

// refusedRetry is the pause after a refused connection: nothing reached
// the application, so there is no load to spare it from, and the switch
// should follow the moment the port opens, not a whole interval later.
const refusedRetry = 10 * time.Millisecond

// Check probes until a 2xx answer or until the window closes. Each probe
// uses a fresh connection and its own timeout of max(interval, 1s), capped
// by the time left, so a server that accepts and never answers cannot
// stall a deploy. Cancelling ctx ends the check with ctx's error.
func (h HealthCheck) Check(ctx context.Context) error {
	if h.StartDelay > 0 {
		if err := h.pause(ctx, h.StartDelay); err != nil {
			return err
		}
	}
	url := h.URL()
	deadline := time.Now().Add(h.Timeout)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	reason := "no attempts"
	for !time.Now().After(deadline) {
		full := max(h.Interval, minProbeTimeout)
		timeout := full
		if left := time.Until(deadline); left < timeout {
			timeout = max(left, time.Millisecond)
		}
		last := h.gaveUp() // the last probe: asked before it, so one runs after GiveUp
		ok, r, err := probe(ctx, client, url, timeout)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if last {
			reason = r
			break
		}
		// A last probe cut short by the end of the window says nothing new
		// about a server that answered, say, HTTP 500 before: keep that.
		if timeout < full && reason != "no attempts" && strings.HasPrefix(r, "timeout after ") {
			continue
		}
		reason = r
		pause := max(h.Interval, 0)
		if r == "connection refused" {
			pause = min(pause, refusedRetry)
		}
		if err := h.pause(ctx, pause); err != nil {
			return err
		}
	}
	return &HealthError{URL: url, Reason: reason}
}

// gaveUp reports whether GiveUp is closed.
func (h HealthCheck) gaveUp() bool {
	select {
	case <-h.GiveUp:
		return true
	default:
		return false
	}
}

// pause sleeps for d, or less when GiveUp closes meanwhile.
func (h HealthCheck) pause(ctx context.Context, d time.Duration) error {
	if h.GiveUp == nil {
		return sleepCtx(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-h.GiveUp:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// probe sends one GET. It returns ok for a 2xx answer, else the reason;
// err only when ctx was cancelled.
func probe(ctx context.Context, client *http.Client, url string, timeout time.Duration) (ok bool, reason string, err error) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error(), nil
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, "", ctx.Err()
		}
		return false, transportReason(err, timeout), nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return true, "", nil
	}
	return false, "HTTP " + strconv.Itoa(resp.StatusCode), nil
}

// transportReason is a short, stable description of a failed probe.
func transportReason(err error, timeout time.Duration) string {
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return "timeout after " + strconv.FormatInt(timeout.Milliseconds(), 10) + "ms"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without a response"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "cannot resolve " + dnsErr.Name
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return fmt.Sprint(err)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
