package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/proxy"
	"github.com/rollbridge/rollbridge/runtime"
)

// expiredRetryAfter is the Retry-After of the 503s a pause answers once
// it reached its --max-pause (docs/migrations.md).
const expiredRetryAfter = 10 * time.Second

// trafficState is what the proxy does with new requests
// (docs/migrations.md): an operator's pause, a deploy's hold, maintenance.
// Guarded by Engine.mu; the proxy's gate follows it (applyGateLocked).
type trafficState struct {
	pause       *operatorPause
	deployHold  *deployHold // nil when no deploy holds traffic
	maintenance *maintenanceState
	// readopting holds requests while a daemon that restarted checks the
	// release it re-adopts (docs/troubleshooting.md#when-the-daemon-crashes);
	// only before the control socket exists, so never in status.
	readopting bool
}

// deployHold is the hold of a deploy --hold-traffic.
type deployHold struct {
	releaseID string
	since     time.Time
	max       time.Duration
}

// end is the latest the hold can last: its --max-pause (a command still
// running then is stopped after the hold ended).
func (h *deployHold) end() time.Time { return h.since.Add(h.max) }

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
	return t.pause == nil && t.deployHold == nil && t.maintenance == nil
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
	case t.pause != nil || t.deployHold != nil || t.readopting:
		e.proxy.Hold()
	default:
		return e.proxy.Release()
	}
	return 0
}

// pauseTraffic starts an operator pause that expires after max. A pause
// already on keeps its start and gets the new limit from now.
//
// The traffic commands refuse once the daemon is stopping (ErrShuttingDown),
// checked under e.mu, which a retirement also holds when it begins: a
// change is either in the state a successor receives or refused, never
// lost between the two.
func (e *Engine) pauseTraffic(max time.Duration) error {
	e.mu.Lock()
	if e.stopping.Load() {
		e.mu.Unlock()
		return ErrShuttingDown
	}
	now := time.Now()
	p := &operatorPause{since: now, max: max}
	if old := e.clearPauseLocked(); old != nil && !old.expired {
		p.since = old.since
		p.max = now.Sub(old.since) + max
	}
	e.armPauseLocked(p)
	e.applyGateLocked()
	e.mu.Unlock()
	e.persist.request()
	e.events.log("traffic paused", jsconfig.Field{Key: "by", Value: "operator"}, jsconfig.Field{Key: "maxPauseMs", Value: max.Milliseconds()})
	return nil
}

// clearPauseLocked removes the operator pause and stops its expiry
// timer. It returns the pause that was on, nil for none.
func (e *Engine) clearPauseLocked() *operatorPause {
	p := e.traffic.pause
	if p != nil && p.timer != nil {
		p.timer.Stop()
	}
	e.traffic.pause = nil
	return p
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
	e.persist.request()
	e.events.log("pause expired", jsconfig.Field{Key: "heldRequests", Value: held})
}

// HoldByDeployError is resume's refusal while a deploy's hold is on.
type HoldByDeployError struct {
	ReleaseID string
	Until     time.Time
	// EndedPause is set when resume did end an operator pause: only the
	// deploy's hold is left.
	EndedPause bool
}

func (e *HoldByDeployError) Error() string {
	prefix := ""
	if e.EndedPause {
		prefix = "The pause ended, but t"
	} else {
		prefix = "T"
	}
	return fmt.Sprintf("%sraffic is held by the deploy of release %s (deploy --hold-traffic); it goes on by itself when that deploy switches or is called off, by %s at the latest.", prefix, e.ReleaseID, e.Until.UTC().Format(time.RFC3339))
}

// resumeOutcome is what resumeTraffic did.
type resumeOutcome struct {
	released  int           // held requests let through
	wasPaused bool          // an operator pause was on
	pausedFor time.Duration // how long it was on
	activeID  string        // the release they went to; "" for none
}

// resumeTraffic ends the operator pause. held requests go to the active
// release unless a deploy still holds traffic (a *HoldByDeployError) or
// maintenance is on. wasPaused is false when no operator pause was on.
func (e *Engine) resumeTraffic() (out resumeOutcome, err error) {
	e.mu.Lock()
	if e.stopping.Load() {
		e.mu.Unlock()
		return out, ErrShuttingDown
	}
	p := e.clearPauseLocked()
	if p != nil {
		out.pausedFor = time.Since(p.since)
	}
	out.wasPaused = p != nil
	out.released = e.applyGateLocked()
	if e.active != nil {
		out.activeID = e.active.ID
	}
	hold := e.traffic.deployHold
	e.mu.Unlock()
	if p != nil {
		e.persist.request()
		e.events.log("traffic resumed", jsconfig.Field{Key: "by", Value: "operator"}, jsconfig.Field{Key: "releasedRequests", Value: out.released}, jsconfig.Field{Key: "pausedMs", Value: out.pausedFor.Milliseconds()})
	}
	if hold != nil {
		return out, &HoldByDeployError{ReleaseID: hold.releaseID, Until: hold.end(), EndedPause: p != nil}
	}
	return out, nil
}

// holdForDeploy holds new requests for a deploy of releaseID that may take
// up to max to switch (deploy --hold-traffic). lift ends the hold: held
// requests go to whatever release is active then, unless an operator
// pause or maintenance keeps them. Once the daemon is stopping it holds
// nothing and returns ErrShuttingDown: a shutdown or a retirement sets
// the flag under the same lock, so a hold either began before it (and
// the deploy lifts it at its next check) or never begins.
func (e *Engine) holdForDeploy(releaseID string, max time.Duration) (lift func() (released int), err error) {
	e.mu.Lock()
	if e.stopping.Load() {
		e.mu.Unlock()
		return nil, ErrShuttingDown
	}
	h := &deployHold{releaseID: releaseID, since: time.Now(), max: max}
	e.traffic.deployHold = h
	e.applyGateLocked()
	e.mu.Unlock()
	e.events.log("traffic paused", jsconfig.Field{Key: "by", Value: "deploy"}, jsconfig.Field{Key: "maxPauseMs", Value: max.Milliseconds()}, jsconfig.Field{Key: "releaseId", Value: releaseID})
	return func() int {
		e.mu.Lock()
		e.traffic.deployHold = nil
		released := e.applyGateLocked()
		e.mu.Unlock()
		e.events.log("traffic resumed", jsconfig.Field{Key: "by", Value: "deploy"}, jsconfig.Field{Key: "releaseId", Value: releaseID}, jsconfig.Field{Key: "releasedRequests", Value: released}, jsconfig.Field{Key: "pausedMs", Value: time.Since(h.since).Milliseconds()})
		return released
	}, nil
}

// setMaintenance turns maintenance mode on (m) or off (nil). wasOn tells
// whether it was on before.
func (e *Engine) setMaintenance(m *maintenanceState) (wasOn bool, err error) {
	e.mu.Lock()
	if e.stopping.Load() {
		e.mu.Unlock()
		return false, ErrShuttingDown
	}
	was := e.traffic.maintenance
	e.traffic.maintenance = m
	e.applyGateLocked()
	e.mu.Unlock()
	e.persist.request()
	if m != nil {
		e.events.log("maintenance enabled", jsconfig.Field{Key: "message", Value: m.message}, jsconfig.Field{Key: "retryAfterSeconds", Value: int64(m.retryAfter / time.Second)})
	} else if was != nil {
		e.events.log("maintenance disabled")
	}
	return was != nil, nil
}

// Bounds of the traffic commands' values (docs/cli.md#pause).
const (
	DefaultMaxPause         = 30 * time.Second
	DefaultPauseDrain       = 30 * time.Second
	MaxPauseLimit           = time.Hour
	DefaultMaintenanceRetry = 60 * time.Second
	MaxRetryAfter           = 24 * time.Hour
	MaxMaintenanceMessage   = 1000 // bytes
)

// trafficObject is the traffic state as status, the traffic command and
// the state file show it; nil while requests flow normally. forState
// leaves out what must not outlive this daemon (a deploy's hold, the
// held requests).
func (e *Engine) trafficObject(forState bool) jsconfig.Object {
	e.mu.Lock()
	t := e.traffic
	var pause operatorPause
	if t.pause != nil {
		pause = *t.pause
	}
	e.mu.Unlock()
	if forState {
		t.deployHold = nil
	}
	if t.serving() {
		return nil
	}
	state := trafficStateName(t.maintenance != nil, t.pause != nil && pause.expired)
	var paused, hold, maintenance any
	if t.pause != nil {
		paused = jsconfig.Object{
			{Key: "expired", Value: pause.expired},
			{Key: "expiresAt", Value: runtime.ISOTime(pause.deadline())},
			{Key: "maxPauseMs", Value: pause.max.Milliseconds()},
			{Key: "pausedAt", Value: runtime.ISOTime(pause.since)},
		}
	}
	if h := t.deployHold; h != nil {
		hold = jsconfig.Object{
			{Key: "expiresAt", Value: runtime.ISOTime(h.end())},
			{Key: "heldAt", Value: runtime.ISOTime(h.since)},
			{Key: "maxPauseMs", Value: h.max.Milliseconds()},
			{Key: "releaseId", Value: h.releaseID},
		}
	}
	if m := t.maintenance; m != nil {
		maintenance = jsconfig.Object{
			{Key: "enabledAt", Value: runtime.ISOTime(m.since)},
			{Key: "message", Value: m.message},
			{Key: "retryAfterSeconds", Value: int64(m.retryAfter / time.Second)},
		}
	}
	var o jsconfig.Object
	if !forState { // a hold and held requests die with this daemon
		requests, bytes := e.proxy.Held()
		o = jsconfig.Object{{Key: "deployHold", Value: hold}, {Key: "heldBytes", Value: bytes}, {Key: "heldRequests", Value: requests}}
	}
	return append(o,
		jsconfig.Field{Key: "maintenance", Value: maintenance},
		jsconfig.Field{Key: "paused", Value: paused},
		jsconfig.Field{Key: "state", Value: state},
	)
}

// trafficStateName is the "state" of traffic that does not flow
// normally: maintenance wins over a pause, as at the gate
// (applyGateLocked).
func trafficStateName(maintenance, pauseExpired bool) string {
	switch {
	case maintenance:
		return "maintenance"
	case pauseExpired:
		return "pause-expired"
	}
	return "paused"
}

// servingObject is trafficObject's answer while requests flow normally.
var servingObject = jsconfig.Object{
	{Key: "deployHold", Value: nil},
	{Key: "heldBytes", Value: 0},
	{Key: "heldRequests", Value: 0},
	{Key: "maintenance", Value: nil},
	{Key: "paused", Value: nil},
	{Key: "state", Value: "serving"},
}

// trafficReply is a traffic command's reply: the fields given, then
// "traffic".
func (e *Engine) trafficReply(fields ...jsconfig.Field) ([]byte, error) {
	t := e.trafficObject(false)
	if t == nil {
		t = servingObject
	}
	return append(jsconfig.Object(fields), jsconfig.Field{Key: "traffic", Value: t}).MarshalJSON()
}

// millisField reads an optional whole number of milliseconds in [lo, hi].
func millisField(req *control.Request, name string, def, lo, hi time.Duration) (time.Duration, error) {
	return durationField(req, name, time.Millisecond, "milliseconds", def, lo, hi)
}

// durationField reads an optional whole number of units (unitName) in
// [lo, hi]; def when the field is absent.
func durationField(req *control.Request, name string, unit time.Duration, unitName string, def, lo, hi time.Duration) (time.Duration, error) {
	if _, present := req.Raw(name); !present {
		return def, nil
	}
	v, ok := req.Number(name)
	n, whole := wholeIn(v, int64(lo/unit), int64(hi/unit))
	if !ok || !whole {
		return 0, fmt.Errorf("%s must be a whole number of %s from %d to %d", name, unitName, lo/unit, hi/unit)
	}
	return time.Duration(n) * unit, nil
}

// handlePause is the pause command: hold new requests, then wait (no lock
// held) for the requests in flight, up to drainTimeoutMs.
//
// The traffic commands write the state file before they reply (a failed
// write is logged by the persister): a daemon killed just after telling
// a client "paused" must come back paused.
func (e *Engine) handlePause(req *control.Request) ([]byte, error) {
	max, err := millisField(req, "maxPauseMs", DefaultMaxPause, time.Millisecond, MaxPauseLimit)
	if err != nil {
		return nil, err
	}
	drain, err := millisField(req, "drainTimeoutMs", DefaultPauseDrain, 0, MaxPauseLimit)
	if err != nil {
		return nil, err
	}
	if err := e.pauseTraffic(max); err != nil {
		return nil, err
	}
	e.persist.sync()
	began := time.Now()
	ctx, cancel := context.WithTimeout(e.ctx, drain)
	open, _ := e.proxy.WaitInFlight(ctx)
	cancel()
	e.events.log("traffic drained", jsconfig.Field{Key: "inFlight", Value: open}, jsconfig.Field{Key: "waitedMs", Value: time.Since(began).Milliseconds()})
	return e.trafficReply(jsconfig.Field{Key: "inFlight", Value: open})
}

// handleResume is the resume command.
// The reply names the release the held requests went to (null for none)
// and how long the pause lasted (0 when none was on), so the CLI can say
// what happened without a second request that could see a later state.
func (e *Engine) handleResume() ([]byte, error) {
	out, err := e.resumeTraffic()
	if errors.Is(err, ErrShuttingDown) {
		return nil, err
	}
	e.persist.sync() // also when a deploy's hold remains: the pause ended
	if err != nil {
		return nil, err
	}
	var active any
	if out.activeID != "" {
		active = out.activeID
	}
	return e.trafficReply(
		jsconfig.Field{Key: "activeReleaseId", Value: active},
		jsconfig.Field{Key: "pausedMs", Value: out.pausedFor.Milliseconds()},
		jsconfig.Field{Key: "released", Value: out.released},
		jsconfig.Field{Key: "wasPaused", Value: out.wasPaused},
	)
}

// handleMaintenance is the maintenance command.
func (e *Engine) handleMaintenance(req *control.Request) ([]byte, error) {
	raw, _ := req.Raw("enabled")
	switch string(raw) {
	case "false":
		was, err := e.setMaintenance(nil)
		if err != nil {
			return nil, err
		}
		e.persist.sync()
		return e.trafficReply(jsconfig.Field{Key: "wasEnabled", Value: was})
	case "true":
	default:
		return nil, errors.New("enabled must be true or false")
	}
	msg, _, err := req.OptionalString("message")
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	if err := CheckMaintenanceMessage(msg); err != nil {
		return nil, err
	}
	retry, err := durationField(req, "retryAfterSeconds", time.Second, "seconds", DefaultMaintenanceRetry, time.Second, MaxRetryAfter)
	if err != nil {
		return nil, err
	}
	if msg == "" {
		// Status and the events show what clients read.
		msg = proxy.DefaultMaintenanceMessage
	}
	was, err := e.setMaintenance(&maintenanceState{since: time.Now(), message: msg, retryAfter: retry})
	if err != nil {
		return nil, err
	}
	e.persist.sync()
	return e.trafficReply(jsconfig.Field{Key: "wasEnabled", Value: was})
}

// CheckMaintenanceMessage refuses a message the maintenance page cannot
// show as given: too long, not UTF-8, or with control characters (a
// header or page an attacker could shape).
func CheckMaintenanceMessage(msg string) error {
	if len(msg) > MaxMaintenanceMessage {
		return fmt.Errorf("The maintenance message is %d bytes; the limit is %d.", len(msg), MaxMaintenanceMessage)
	}
	if !utf8.ValidString(msg) {
		return errors.New("The maintenance message is not valid UTF-8.")
	}
	for _, r := range msg {
		if unicode.IsControl(r) {
			return fmt.Errorf("The maintenance message contains the control character %U; use plain text on one line.", r)
		}
	}
	return nil
}

// Where a restored traffic state came from, as the "traffic state
// restored" and "traffic state ignored" events name it.
const (
	trafficFromStateFile = "stateFile"
	trafficFromTakeover  = "takeover"
)

// savedTraffic is an operator pause and maintenance as a state file's or a
// handoff's "traffic" member records them (trafficObject(true)).
type savedTraffic struct {
	pause       *operatorPause
	maintenance *maintenanceState
}

// state is the "state" the saved traffic restores.
func (s *savedTraffic) state() string {
	return trafficStateName(s.maintenance != nil, s.pause != nil && s.pause.expired)
}

// maxSavedPause bounds the maxPauseMs read back: a year, far beyond any
// pause renewed within MaxPauseLimit each time, and exact as a JSON number.
const maxSavedPause = 365 * 24 * time.Hour

// parseSavedTraffic reads a "traffic" member decoded from JSON. nil (no
// member, or null) restores nothing. Anything else that is not exactly
// the shape this version writes is an error: the file may come from
// another version, and a half-understood pause must not hold traffic. A
// pause whose deadline passed by now comes back expired; one recorded as
// starting in the future (a clock that went back) counts from now, and
// none ends later than MaxPauseLimit from now, so no pause outlasts the
// limit of `rollbridge pause` because it was read back.
func parseSavedTraffic(v any, now time.Time) (*savedTraffic, error) {
	if v == nil {
		return nil, nil
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("traffic is not an object")
	}
	var s savedTraffic
	if raw := root["paused"]; raw != nil {
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, errors.New("traffic.paused is not an object")
		}
		since, err := savedTime(m, "pausedAt")
		if err != nil {
			return nil, fmt.Errorf("traffic.paused.%w", err)
		}
		// A pause renewed while on keeps its start, so its limit counts
		// from then and may exceed MaxPauseLimit; the deadline is what is
		// bounded, below.
		ms, ok := wholeIn(m["maxPauseMs"], 1, maxSavedPause.Milliseconds())
		if !ok {
			return nil, fmt.Errorf("traffic.paused.maxPauseMs is not a whole number from 1 to %d", maxSavedPause.Milliseconds())
		}
		expired, ok := m["expired"].(bool)
		if !ok {
			return nil, errors.New("traffic.paused.expired is not true or false")
		}
		if since.After(now) {
			since = now
		}
		p := &operatorPause{since: since, max: time.Duration(ms) * time.Millisecond, expired: expired}
		if latest := now.Add(MaxPauseLimit); p.deadline().After(latest) {
			p.max = latest.Sub(since)
		}
		if !p.deadline().After(now) {
			p.expired = true
		}
		s.pause = p
	}
	if raw := root["maintenance"]; raw != nil {
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, errors.New("traffic.maintenance is not an object")
		}
		since, err := savedTime(m, "enabledAt")
		if err != nil {
			return nil, fmt.Errorf("traffic.maintenance.%w", err)
		}
		msg, ok := m["message"].(string)
		if !ok {
			return nil, errors.New("traffic.maintenance.message is not a string")
		}
		if err := CheckMaintenanceMessage(msg); err != nil {
			return nil, fmt.Errorf("traffic.maintenance.message: %w", err)
		}
		secs, ok := wholeIn(m["retryAfterSeconds"], 1, int64(MaxRetryAfter/time.Second))
		if !ok {
			return nil, fmt.Errorf("traffic.maintenance.retryAfterSeconds is not a whole number from 1 to %d", int64(MaxRetryAfter/time.Second))
		}
		s.maintenance = &maintenanceState{since: since, message: msg, retryAfter: time.Duration(secs) * time.Second}
	}
	if s.pause == nil && s.maintenance == nil {
		return nil, nil
	}
	return &s, nil
}

// savedTime reads a timestamp member as runtime.ISOTime writes it.
func savedTime(m map[string]any, key string) (time.Time, error) {
	s, ok := m[key].(string)
	if !ok {
		return time.Time{}, fmt.Errorf("%s is not a string", key)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s is not a timestamp: %q", key, s)
	}
	return t, nil
}

// wholeIn reads a JSON number that is a whole number in [lo, hi].
func wholeIn(v any, lo, hi int64) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f != float64(int64(f)) || f < float64(lo) || f > float64(hi) {
		return 0, false
	}
	return int64(f), true
}

// restoreTraffic applies a "traffic" member read back from the state
// file at start-up or from the retiring owner's handoff, before the proxy
// serves: the pause (with its original deadline, or expired) and
// maintenance replace whatever this daemon has. A member that cannot be
// read is ignored with an event: it must never stop the daemon from
// starting.
func (e *Engine) restoreTraffic(v any, source string) {
	s, err := parseSavedTraffic(v, time.Now())
	if err != nil {
		e.events.log("traffic state ignored", jsconfig.Field{Key: "error", Value: err.Error()}, jsconfig.Field{Key: "source", Value: source})
		return
	}
	if s == nil {
		return
	}
	e.mu.Lock()
	e.clearPauseLocked()
	if s.pause != nil {
		e.armPauseLocked(s.pause)
	}
	e.traffic.maintenance = s.maintenance
	e.applyGateLocked()
	e.mu.Unlock()
	e.persist.request()
	fields := []jsconfig.Field{{Key: "source", Value: source}, {Key: "state", Value: s.state()}}
	if s.pause != nil {
		fields = append(fields, jsconfig.Field{Key: "pauseExpiresAt", Value: runtime.ISOTime(s.pause.deadline())})
	}
	e.events.log("traffic state restored", fields...)
}

// handedOverTraffic is the "traffic" member of a retire-owner reply, nil
// when it has none (a Node.js owner, or one that served normally).
func handedOverTraffic(raw []byte) any {
	var reply struct {
		Traffic any `json:"traffic"`
	}
	if json.Unmarshal(raw, &reply) != nil {
		return nil
	}
	return reply.Traffic
}

// trafficOnlyState is what recover leaves of a state file whose "traffic"
// member (as decoded) records a pause or maintenance this version can
// restore: a file of no processes with that member as it was, and its
// state. It returns nil when there is nothing to keep (no such member,
// or one the next daemon would ignore anyway).
func trafficOnlyState(traffic any) (doc []byte, state string) {
	s, err := parseSavedTraffic(traffic, time.Now())
	if err != nil || s == nil {
		return nil, ""
	}
	raw, err := jsconfig.Object{
		{Key: "activeReleaseId", Value: nil},
		{Key: "orphans", Value: []any{}},
		{Key: "releases", Value: []any{}},
		{Key: "services", Value: []any{}},
		{Key: "singletons", Value: []any{}},
		{Key: "traffic", Value: traffic},
	}.MarshalJSON()
	if err != nil {
		return nil, ""
	}
	return indentJSON(raw), s.state()
}
