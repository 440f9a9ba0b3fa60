package engine

import (
	"bufio"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/rollbridge/rollbridge/engine/control"
	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// followBuffer is how many entries wait for one follow connection before
// further ones are dropped and counted (docs/cli.md#the-follow-command).
const followBuffer = 1000

var errStreams = errors.New(`streams must be a non-empty array of "logs" and/or "events"`)

// follower is one follow connection's subscription.
type follower struct {
	processID string
	filtered  bool
	mark      uint64 // logs: lines numbered after it are live, earlier ones replayed
	ch        chan []byte
	dropped   atomic.Int64
	dropCh    chan struct{} // tells the writer there is a count to report
}

func newFollower(processID string, filtered bool) *follower {
	return &follower{processID: processID, filtered: filtered, ch: make(chan []byte, followBuffer), dropCh: make(chan struct{}, 1)}
}

// offer queues a line without ever waiting: a full buffer counts a drop.
func (f *follower) offer(line []byte) {
	select {
	case f.ch <- line:
	default:
		f.dropped.Add(1)
		select {
		case f.dropCh <- struct{}{}:
		default:
		}
	}
}

// logHub fans captured output lines out to the followers of "logs".
type logHub struct {
	mu        sync.Mutex
	followers map[*follower]struct{}
	n         atomic.Int32 // fast path: nothing to do without followers
}

// publishOutput passes a captured line of in to the log followers.
func (e *Engine) publishOutput(in *instance, entry runtime.OutputEntry) {
	if e.logHub.n.Load() == 0 {
		return
	}
	line, err := logLine(in.id, e.sourceOf(in), entry)
	if err != nil {
		return
	}
	e.logHub.mu.Lock()
	for f := range e.logHub.followers {
		if entry.Seq > f.mark && (!f.filtered || SelectsProcess(f.processID, in.id)) {
			f.offer(line)
		}
	}
	e.logHub.mu.Unlock()
}

// logLine is a captured line as a follow line.
func logLine(id, source string, entry runtime.OutputEntry) ([]byte, error) {
	return jsconfig.Object{
		{Key: "type", Value: "log"},
		{Key: "id", Value: id},
		{Key: "source", Value: source},
		{Key: "at", Value: runtime.ISOTime(entry.At)},
		{Key: "line", Value: entry.Line},
		{Key: "stream", Value: entry.Stream},
	}.MarshalJSON()
}

// statusProcesses lists the processes in status order: each retained
// release's, then the services, then the singletons.
func (e *Engine) statusProcesses() []*instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	return processesOf(e.releases, e.services, e.singletons)
}

// processesOf lists the processes of releases, services and singletons,
// in that order.
func processesOf(releases []*Release, services []*serviceEntry, singletons []*singletonEntry) []*instance {
	var procs []*instance
	for _, r := range releases {
		procs = append(procs, r.procs...)
	}
	for _, s := range services {
		procs = append(procs, s.inst)
	}
	for _, s := range singletons {
		procs = append(procs, s.inst)
	}
	return procs
}

// sourceOf is the "source" of a log line: the release id for a release
// process (handoff services included), "service" or "singleton".
func (e *Engine) sourceOf(in *instance) string {
	if in.daemonWide() {
		return string(in.def.Policy)
	}
	return in.releaseTag()
}

// parseStreams reads follow's streams: a non-empty array of "logs" and
// "events", each kept once in request order.
func parseStreams(req *control.Request) ([]string, error) {
	raw, ok := req.Raw("streams")
	if !ok {
		return nil, errStreams
	}
	var list []any
	if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
		return nil, errStreams
	}
	var out []string
	seen := map[string]bool{}
	for _, v := range list {
		s, ok := v.(string)
		if !ok || (s != "logs" && s != "events") {
			return nil, errStreams
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// follow answers the follow command (docs/cli.md#the-follow-command): the
// retained entries, {"type":"live"}, then everything new until the connection
// ends. Replay and subscription are taken together, so nothing is lost or
// sent twice; a slow reader only loses its own entries.
func (e *Engine) follow(conn *control.Conn, req *control.Request) ([]byte, error) {
	streams, err := parseStreams(req)
	if err != nil {
		return nil, err
	}
	processID, filtered, err := req.OptionalString("processId")
	if err != nil {
		return nil, err
	}
	limit, limited := req.Number("limit")
	f := newFollower(processID, filtered)
	var replay [][]byte
	var followsLogs, followsEvents bool
	for _, s := range streams {
		switch s {
		case "logs":
			followsLogs = true
			e.logHub.mu.Lock()
			f.mark = runtime.OutputSeq()
			e.logHub.followers[f] = struct{}{}
			e.logHub.n.Add(1)
			e.logHub.mu.Unlock()
			replay = append(replay, e.retainedOutput(f)...)
		case "events":
			followsEvents = true
			for _, ev := range e.events.follow(f, limit, limited) {
				replay = append(replay, ev)
			}
		}
	}
	unsubscribe := func() {
		if followsLogs {
			e.logHub.mu.Lock()
			delete(e.logHub.followers, f)
			e.logHub.n.Add(-1)
			e.logHub.mu.Unlock()
		}
		if followsEvents {
			e.events.unfollow(f)
		}
	}
	conn.Stream()
	conn.AfterReply(func() { go streamTo(conn, f, replay, unsubscribe) })
	return jsconfig.Object{{Key: "following", Value: streams}}.MarshalJSON()
}

// retainedOutput is the replay of the logs stream: every retained line
// of the matching processes up to f.mark, process by process in status
// order.
func (e *Engine) retainedOutput(f *follower) [][]byte {
	var out [][]byte
	for _, in := range e.statusProcesses() {
		if f.filtered && !SelectsProcess(f.processID, in.id) {
			continue
		}
		source := e.sourceOf(in)
		for _, entry := range in.proc.Status().Logs {
			if entry.Seq > f.mark {
				continue // it arrives live
			}
			if line, err := logLine(in.id, source, entry); err == nil {
				out = append(out, line)
			}
		}
	}
	return out
}

// streamTo writes the replay, the live marker and then every queued
// entry, batching what is queued into one write, until the connection
// ends. A count of dropped entries is reported as soon as the reader
// makes room again.
func streamTo(conn *control.Conn, f *follower, replay [][]byte, unsubscribe func()) {
	defer unsubscribe()
	w := bufio.NewWriterSize(conn, 32<<10)
	for _, line := range replay {
		w.Write(line)
		w.WriteByte('\n')
	}
	w.WriteString(`{"type":"live"}` + "\n")
	if w.Flush() != nil {
		return
	}
	reportDrops := func() {
		if n := f.dropped.Swap(0); n > 0 {
			w.WriteString(`{"type":"dropped","count":` + strconv.FormatInt(n, 10) + "}\n")
		}
	}
	for {
		select {
		case <-conn.Done():
			return
		case <-f.dropCh:
			reportDrops()
			if w.Flush() != nil {
				return
			}
		case line := <-f.ch:
			reportDrops()
			w.Write(line)
			w.WriteByte('\n')
			for more := true; more; {
				select {
				case line := <-f.ch:
					w.Write(line)
					w.WriteByte('\n')
				default:
					more = false
				}
			}
			if w.Flush() != nil {
				return
			}
		}
	}
}
