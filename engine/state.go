package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// PersistInterval is how often the state file is rewritten besides the
// writes that follow deploys, stops and drains (daemon.md §8.2).
const PersistInterval = 5000 * time.Millisecond

// orphanHint explains the orphans event.
const orphanHint = "a previous daemon did not shut down cleanly; verify these pids and stop any leftovers"

// secretKeys are dropped at any depth of the state file (daemon.md §8.1):
// commands, working directories, environments and output stay in memory.
var secretKeys = map[string]bool{"children": true, "command": true, "cwd": true, "env": true, "environment": true, "logs": true, "output": true}

// persister writes the state file: one write at a time, requests made
// while a write is pending fold into it.
type persister struct {
	e    *Engine
	path string

	kick     chan struct{}
	quit     chan struct{}
	done     chan struct{}
	started  bool // set by start, before anything else runs
	quitOnce sync.Once
	writeMu  sync.Mutex // one write at a time
	counter  int
}

func newPersister(e *Engine, path string) *persister {
	return &persister{e: e, path: path, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

// start writes once now and then every PersistInterval and on request.
func (p *persister) start() {
	p.started = true
	p.request()
	go func() {
		defer close(p.done)
		tick := time.NewTicker(PersistInterval)
		defer tick.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-p.kick:
			case <-tick.C:
			}
			p.write()
		}
	}()
}

// request asks for a write soon; it never blocks.
func (p *persister) request() {
	if p == nil {
		return
	}
	select {
	case p.kick <- struct{}{}:
	default: // one is pending and will see the latest state
	}
}

// stopTimer ends the periodic and requested writes and waits for a
// write in flight. It may be called more than once.
func (p *persister) stopTimer() {
	if !p.started {
		return
	}
	p.quitOnce.Do(func() { close(p.quit) })
	<-p.done
}

// write replaces the state file with a fresh snapshot, unless the daemon
// is stopping. A failure is logged and otherwise ignored.
func (p *persister) write() {
	if p.e.stopping.Load() {
		return
	}
	data, err := p.e.stateSnapshot()
	if err == nil {
		err = p.replace(data)
	}
	if err != nil {
		p.e.events.log("state persist failed", jsconfig.Field{Key: "error", Value: err.Error()})
	}
}

// replace writes data to a unique temporary file next to the state file,
// syncs it and renames it over the state file, so a crash leaves either
// the old or the new complete file.
func (p *persister) replace(data []byte) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	p.counter++
	tmp := p.path + "." + strconv.Itoa(os.Getpid()) + "." + strconv.Itoa(p.counter) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return jsconfig.NodeError(err, "open", tmp)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return jsconfig.NodeError(err, "write", tmp)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		os.Remove(tmp)
		return jsconfig.NodeError(err, "rename", tmp)
	}
	return nil
}

// finish runs at the end of a clean shutdown (daemon.md §8.3): orphans
// inherited from an earlier daemon that still live are kept in the file,
// otherwise the file goes.
func (p *persister) finish() error {
	p.stopTimer()
	live := LiveOrphans(p.e.orphanList())
	if len(live) == 0 {
		err := os.Remove(p.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return jsconfig.NodeError(err, "unlink", p.path)
		}
		return nil
	}
	list := make([]jsconfig.Object, 0, len(live))
	for _, o := range live {
		list = append(list, o.object(true))
	}
	doc := jsconfig.Object{
		{Key: "activeReleaseId", Value: nil},
		{Key: "orphans", Value: list},
		{Key: "releases", Value: []any{}},
		{Key: "services", Value: []any{}},
		{Key: "singletons", Value: []any{}},
	}
	raw, err := doc.MarshalJSON()
	if err != nil {
		return err
	}
	return p.replace(indentJSON(raw))
}

// stateSnapshot is the status object without "status", plus every stored
// event and persistedAt, with secrets removed and pretty-printed.
func (e *Engine) stateSnapshot() ([]byte, error) {
	status := e.statusObject(true)
	status = append(status,
		jsconfig.Field{Key: "events", Value: joinEvents(e.events.recent(0, false))},
		jsconfig.Field{Key: "persistedAt", Value: runtime.ISOTime(time.Now())},
	)
	raw, err := status.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return indentJSON(stripKeys(raw, secretKeys)), nil
}

// indentJSON formats compact JSON like JSON.stringify(v, null, 2) plus a
// newline. json.Indent copies strings and numbers byte for byte.
func indentJSON(raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return append(raw, '\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// stripKeys copies valid JSON, leaving out every object member whose key
// is in drop, at any depth. Everything else is copied byte for byte.
func stripKeys(src []byte, drop map[string]bool) []byte {
	s := stripper{src: src, drop: drop, out: make([]byte, 0, len(src))}
	s.value(true)
	return s.out
}

type stripper struct {
	src  []byte
	i    int
	drop map[string]bool
	out  []byte
}

func (s *stripper) space() {
	for s.i < len(s.src) && (s.src[s.i] == ' ' || s.src[s.i] == '\n' || s.src[s.i] == '\t' || s.src[s.i] == '\r') {
		s.i++
	}
}

// value consumes one value, copying it when keep is set.
func (s *stripper) value(keep bool) {
	s.space()
	if s.i >= len(s.src) {
		return
	}
	start := s.i
	switch s.src[s.i] {
	case '{':
		s.object(keep)
		return
	case '[':
		s.array(keep)
		return
	case '"':
		s.str()
	default:
		for s.i < len(s.src) && !bytes.ContainsRune([]byte(",}] \n\t\r"), rune(s.src[s.i])) {
			s.i++
		}
	}
	if keep {
		s.out = append(s.out, s.src[start:s.i]...)
	}
}

// str skips a string literal starting at s.i.
func (s *stripper) str() {
	s.i++
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case '\\':
			s.i += 2
			continue
		case '"':
			s.i++
			return
		}
		s.i++
	}
}

// container copies an object or array; element reads one member or
// element and says whether it was kept (a comma goes before the next).
func (s *stripper) container(keep bool, open, close byte, element func(keepFirst bool) bool) {
	s.i++ // the opening bracket
	if keep {
		s.out = append(s.out, open)
	}
	first := true
	for {
		s.space()
		if s.i >= len(s.src) {
			return
		}
		switch s.src[s.i] {
		case close:
			s.i++
			if keep {
				s.out = append(s.out, close)
			}
			return
		case ',':
			s.i++
			continue
		}
		if element(first) {
			first = false
		}
	}
}

func (s *stripper) object(keep bool) {
	s.container(keep, '{', '}', func(first bool) bool {
		keyStart := s.i
		s.str()
		rawKey := s.src[keyStart:s.i]
		var key string
		if json.Unmarshal(rawKey, &key) != nil {
			key = ""
		}
		s.space()
		s.i++ // :
		member := keep && !s.drop[key]
		if member {
			if !first {
				s.out = append(s.out, ',')
			}
			s.out = append(s.out, rawKey...)
			s.out = append(s.out, ':')
		}
		s.value(member)
		return member
	})
}

func (s *stripper) array(keep bool) {
	s.container(keep, '[', ']', func(first bool) bool {
		if keep && !first {
			s.out = append(s.out, ',')
		}
		s.value(keep)
		return true
	})
}

// loadOrphans reads the previous daemon's state file at start-up and
// reports the processes of it that still run (daemon.md §8.5). They are
// never signalled.
func (e *Engine) loadOrphans(path string) {
	list, err := ReadStateFile(path)
	if err != nil {
		e.events.log("state file unreadable", jsconfig.Field{Key: "error", Value: err.Error()}, jsconfig.Field{Key: "statePath", Value: path})
	}
	live := LiveOrphans(list)
	e.mu.Lock()
	e.orphans = live
	e.mu.Unlock()
	for _, o := range live {
		var release any
		if o.ReleaseID != nil {
			release = *o.ReleaseID
		}
		e.events.log("orphaned managed process detected", jsconfig.Field{Key: "pid", Value: o.Pid}, jsconfig.Field{Key: "processId", Value: o.ID}, jsconfig.Field{Key: "releaseId", Value: release})
	}
	if len(live) > 0 {
		e.events.log("orphaned processes from a previous daemon", jsconfig.Field{Key: "count", Value: len(live)}, jsconfig.Field{Key: "hint", Value: orphanHint})
	}
}

// orphanList re-checks the orphans and forgets the dead ones for good,
// so a later reuse of their pids cannot bring them back.
func (e *Engine) orphanList() []Orphan {
	e.mu.Lock()
	list := append([]Orphan(nil), e.orphans...)
	e.mu.Unlock()
	dead := map[Orphan]bool{}
	var live []Orphan
	for _, o := range list {
		if o.Alive() {
			live = append(live, o)
		} else {
			dead[o] = true
		}
	}
	if len(dead) > 0 {
		e.mu.Lock()
		kept := e.orphans[:0:0]
		for _, o := range e.orphans {
			if !dead[o] {
				kept = append(kept, o)
			}
		}
		e.orphans = kept
		e.mu.Unlock()
	}
	return live
}
