package engine

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// EventCapacity is how many events the daemon keeps (docs/cli.md#events).
const EventCapacity = 1000

// Event is one structured daemon event.
type Event struct {
	At      time.Time
	Message string
	Data    jsconfig.Object
}

// MarshalJSON writes {"at","data","message"}.
func (e Event) MarshalJSON() ([]byte, error) {
	data := e.Data
	if data == nil {
		data = jsconfig.Object{}
	}
	return jsconfig.Object{
		{Key: "at", Value: runtime.ISOTime(e.At)},
		{Key: "data", Value: data},
		{Key: "message", Value: e.Message},
	}.MarshalJSON()
}

// eventLog is the ring of recent events and the daemon's JSON log on
// stdout: every event is written there as one line, with one write. The
// ring keeps each event as its JSON, one allocation per event, so a full
// ring costs a few hundred KiB.
type eventLog struct {
	out io.Writer // may be nil
	now func() time.Time

	mu        sync.Mutex
	ring      []json.RawMessage // circular, oldest at head once full
	head      int
	followers map[*follower]struct{}
	outMu     sync.Mutex
}

func newEventLog(out io.Writer) *eventLog {
	return &eventLog{out: out, now: time.Now, ring: make([]json.RawMessage, 0, 64)}
}

// log records an event and writes it to the daemon log.
func (l *eventLog) log(message string, data ...jsconfig.Field) {
	e := Event{At: l.now(), Message: message, Data: jsconfig.Object(data)}
	line, err := e.MarshalJSON()
	if err != nil {
		return
	}
	var buf bytes.Buffer
	buf.Grow(len(line) + 1)
	buf.Write(line)
	buf.WriteByte('\n')
	stored := buf.Bytes()[:len(line):len(line)]
	l.mu.Lock()
	if len(l.ring) < EventCapacity {
		l.ring = append(l.ring, stored)
	} else {
		l.ring[l.head] = stored
		l.head = (l.head + 1) % EventCapacity
	}
	if len(l.followers) > 0 {
		if live, err := followEvent(runtime.ISOTime(e.At), e.Message, e.Data); err == nil {
			for f := range l.followers {
				f.offer(live)
			}
		}
	}
	l.mu.Unlock()
	if l.out == nil {
		return
	}
	l.outMu.Lock()
	_, _ = l.out.Write(buf.Bytes()) // a closed stdout must not stop the daemon
	l.outMu.Unlock()
}

// recent returns the retained events as JSON, oldest first; a finite
// positive limit below the count keeps only the last ceil(limit) of them.
func (l *eventLog) recent(limit float64, limited bool) []json.RawMessage {
	l.mu.Lock()
	all := make([]json.RawMessage, 0, len(l.ring))
	all = append(all, l.ring[l.head:]...)
	all = append(all, l.ring[:l.head]...)
	l.mu.Unlock()
	if limited && !math.IsNaN(limit) && !math.IsInf(limit, 0) && limit > 0 && limit < float64(len(all)) {
		all = all[len(all)-int(math.Ceil(limit)):]
	}
	return all
}

// follow returns the retained events (the last limit of them) as follow
// lines and subscribes f to new ones, in one step.
func (l *eventLog) follow(f *follower, limit float64, limited bool) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := make([]json.RawMessage, 0, len(l.ring))
	all = append(all, l.ring[l.head:]...)
	all = append(all, l.ring[:l.head]...)
	if limited && !math.IsNaN(limit) && !math.IsInf(limit, 0) && limit > 0 && limit < float64(len(all)) {
		all = all[len(all)-int(math.Ceil(limit)):]
	}
	out := make([][]byte, 0, len(all))
	for _, raw := range all {
		var ev struct {
			At      string          `json:"at"`
			Data    json.RawMessage `json:"data"`
			Message string          `json:"message"`
		}
		if json.Unmarshal(raw, &ev) != nil {
			continue
		}
		if line, err := followEvent(ev.At, ev.Message, ev.Data); err == nil {
			out = append(out, line)
		}
	}
	if l.followers == nil {
		l.followers = map[*follower]struct{}{}
	}
	l.followers[f] = struct{}{}
	return out
}

func (l *eventLog) unfollow(f *follower) {
	l.mu.Lock()
	delete(l.followers, f)
	l.mu.Unlock()
}

// followEvent is an event as a follow line: {"type","at","message","data"}.
func followEvent(at, message string, data any) ([]byte, error) {
	if data == nil {
		data = jsconfig.Object{}
	}
	if o, ok := data.(jsconfig.Object); ok && o == nil {
		data = jsconfig.Object{}
	}
	return jsconfig.Object{{Key: "type", Value: "event"}, {Key: "at", Value: at}, {Key: "message", Value: message}, {Key: "data", Value: data}}.MarshalJSON()
}

// joinEvents writes events as one JSON array.
func joinEvents(events []json.RawMessage) json.RawMessage {
	n := 2
	for _, e := range events {
		n += len(e) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, e := range events {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']')
}
