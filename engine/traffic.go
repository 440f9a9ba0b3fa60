package engine

import (
	"fmt"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/proxy"
)

// expiredRetryAfter is the Retry-After of the 503s a pause answers once
// it reached its --max-pause (docs/migrations.md).
const expiredRetryAfter = 10 * time.Second

// trafficState is what the proxy does with new requests
// (docs/migrations.md): an operator's pause, a deploy's hold, maintenance.
// Guarded by Engine.mu; the proxy's gate follows it (applyGateLocked).
type trafficState struct {
	pause       *operatorPause
	deployHold  string // id of the release whose deploy holds traffic, or ""
	holdSince   time.Time
	holdMax     time.Duration
	maintenance *maintenanceState
}

// operatorPause is a pause started by `rollbridge pause`.
type operatorPause struct {
	since   time.Time
	max     time.Duration
	expired bool
	timer   *time.Timer // nil once expired or when restored expired
}

// deadline is when the pause expires.
func (p *operatorPause) deadline() time.Time { return p.since.Add(p.max) }

// maintenanceState is maintenance mode as `rollbridge maintenance on` set it.
type maintenanceState struct {
	since      time.Time
	message    string
	retryAfter time.Duration
}

// serving reports whether requests flow normally.
func (t *trafficState) serving() bool {
	return t.pause == nil && t.deployHold == "" && t.maintenance == nil
}

// applyGateLocked points the proxy's gate at the state: maintenance wins,
// then an expired pause (503), then any pause or hold, else open. Called
// with e.mu held, so gate changes happen in the order of state changes.
func (e *Engine) applyGateLocked() (released int) {
	t := &e.traffic
	switch {
	case t.maintenance != nil:
		e.proxy.SetMaintenance(&proxy.Maintenance{Message: t.maintenance.message, RetryAfter: t.maintenance.retryAfter})
	case t.pause != nil && t.pause.expired:
		e.proxy.Refuse(expiredRetryAfter)
	case t.pause != nil || t.deployHold != "":
		e.proxy.Hold()
	default:
		return e.proxy.Release()
	}
	return 0
}

// pauseTraffic starts an operator pause that expires after max. A pause
// already on keeps its start and gets the new limit from now.
func (e *Engine) pauseTraffic(max time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if p := e.traffic.pause; p != nil && p.timer != nil {
		p.timer.Stop()
	}
	p := &operatorPause{since: now, max: max}
	if old := e.traffic.pause; old != nil && !old.expired {
		p.since = old.since
		p.max = now.Sub(old.since) + max
	}
	e.armPauseLocked(p)
	e.applyGateLocked()
	e.events.log("traffic paused", jsconfig.Field{Key: "by", Value: "operator"}, jsconfig.Field{Key: "maxPauseMs", Value: max.Milliseconds()})
}

// armPauseLocked installs p with its expiry timer (none when expired).
func (e *Engine) armPauseLocked(p *operatorPause) {
	e.traffic.pause = p
	if p.expired {
		return
	}
	p.timer = time.AfterFunc(time.Until(p.deadline()), func() { e.expirePause(p) })
}

// expirePause ends the hold of a pause that reached its limit: held and
// new requests get 503 with Retry-After until `rollbridge resume`.
func (e *Engine) expirePause(p *operatorPause) {
	e.mu.Lock()
	if e.traffic.pause != p || p.expired {
		e.mu.Unlock()
		return
	}
	held, _ := e.proxy.Held()
	p.expired = true
	p.timer = nil
	e.applyGateLocked()
	e.mu.Unlock()
	e.events.log("pause expired", jsconfig.Field{Key: "heldRequests", Value: held})
}

// HoldByDeployError is resume's refusal while a deploy's hold is on.
type HoldByDeployError struct {
	ReleaseID string
	Until     time.Time
}

func (e *HoldByDeployError) Error() string {
	return fmt.Sprintf("Traffic is held by the deploy of release %s for its --before-switch command; it resumes on its own when the command ends (by %s at the latest).", e.ReleaseID, e.Until.UTC().Format(time.RFC3339))
}

// resumeTraffic ends the operator pause. held requests go to the active
// release unless a deploy still holds traffic (a *HoldByDeployError) or
// maintenance is on. wasPaused is false when no operator pause was on.
func (e *Engine) resumeTraffic() (released int, wasPaused bool, pausedFor time.Duration, err error) {
	e.mu.Lock()
	p := e.traffic.pause
	if p != nil {
		if p.timer != nil {
			p.timer.Stop()
		}
		e.traffic.pause = nil
		pausedFor = time.Since(p.since)
	}
	released = e.applyGateLocked()
	hold, until := e.traffic.deployHold, e.traffic.holdSince.Add(e.traffic.holdMax)
	e.mu.Unlock()
	if p != nil {
		e.events.log("traffic resumed", jsconfig.Field{Key: "by", Value: "operator"}, jsconfig.Field{Key: "releasedRequests", Value: released}, jsconfig.Field{Key: "pausedMs", Value: pausedFor.Milliseconds()})
	}
	if hold != "" {
		return released, p != nil, pausedFor, &HoldByDeployError{ReleaseID: hold, Until: until}
	}
	return released, p != nil, pausedFor, nil
}

// holdForDeploy holds new requests for a deploy of releaseID that may take
// up to max to switch (deploy --hold-traffic). lift ends the hold: held
// requests go to whatever release is active then, unless an operator
// pause or maintenance keeps them.
func (e *Engine) holdForDeploy(releaseID string, max time.Duration) (lift func() (released int)) {
	e.mu.Lock()
	e.traffic.deployHold = releaseID
	e.traffic.holdSince = time.Now()
	e.traffic.holdMax = max
	e.applyGateLocked()
	e.mu.Unlock()
	e.events.log("traffic paused", jsconfig.Field{Key: "by", Value: "deploy"}, jsconfig.Field{Key: "maxPauseMs", Value: max.Milliseconds()}, jsconfig.Field{Key: "releaseId", Value: releaseID})
	return func() int {
		e.mu.Lock()
		since := e.traffic.holdSince
		e.traffic.deployHold = ""
		released := e.applyGateLocked()
		e.mu.Unlock()
		e.events.log("traffic resumed", jsconfig.Field{Key: "by", Value: "deploy"}, jsconfig.Field{Key: "releaseId", Value: releaseID}, jsconfig.Field{Key: "releasedRequests", Value: released}, jsconfig.Field{Key: "pausedMs", Value: time.Since(since).Milliseconds()})
		return released
	}
}

// setMaintenance turns maintenance mode on (m) or off (nil).
func (e *Engine) setMaintenance(m *maintenanceState) {
	e.mu.Lock()
	was := e.traffic.maintenance
	e.traffic.maintenance = m
	e.applyGateLocked()
	e.mu.Unlock()
	if m != nil {
		e.events.log("maintenance enabled", jsconfig.Field{Key: "message", Value: m.message}, jsconfig.Field{Key: "retryAfterSeconds", Value: int64(m.retryAfter / time.Second)})
	} else if was != nil {
		e.events.log("maintenance disabled")
	}
}
