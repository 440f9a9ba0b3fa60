package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// PersistInterval is how often the state file is rewritten besides the
// writes that follow deploys, stops and drains (docs/cli.md#the-state-file).
const PersistInterval = 5000 * time.Millisecond

// orphanHint explains the orphans event.
const orphanHint = "a previous daemon did not shut down cleanly; verify these pids and stop any leftovers"

// secretKeys are dropped at any depth of the state file
// (docs/cli.md#the-state-file): commands, working directories, environments
// and output stay in memory.
var secretKeys = map[string]bool{"children": true, "command": true, "cwd": true, "env": true, "environment": true, "logs": true, "output": true}

// persister writes the state file. Every write is a fresh snapshot;
// writes never overlap, and callers that ask while one is running share
// the next one (sync), so a burst of spawns costs one or two writes.
type persister struct {
	e    *Engine
	main string // statePath

	kick     chan struct{}
	quit     chan struct{}
	done     chan struct{}
	started  bool // set by start, before anything else runs
	quitOnce sync.Once

	mu      sync.Mutex
	cond    *sync.Cond
	path    string // where writes go: main, or this daemon's sibling file
	writing bool   // a write (or finish) is running
	begun   uint64 // writes begun
	ended   uint64 // the number of the last write that ended
	lastErr error  // its outcome
	closed  bool   // finished or handed over: nothing more is written
	waiting int    // sync callers waiting for a write (tests wait on it)
	// adopted are sibling files whose entries became this daemon's
	// orphans; they go once a write of the main file covers them.
	adopted []string
	events  eventCache // used by the one write that runs
	// writer names this daemon in every write; read once, since neither
	// its pid nor its start time changes.
	writer jsconfig.Object
}

func newPersister(e *Engine, path string) *persister {
	p := &persister{e: e, main: path, path: path, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}), writer: stateWriter()}
	p.cond = sync.NewCond(&p.mu)
	return p
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
			_ = p.sync()
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
// write in flight. It may be called more than once. Writes asked for
// with sync still happen (a shutdown records the hooks it runs).
func (p *persister) stopTimer() {
	if !p.started {
		return
	}
	p.quitOnce.Do(func() { close(p.quit) })
	<-p.done
}

// sync writes a snapshot taken after the call and returns its outcome:
// it waits for a write that began after it was called, or makes one.
// Concurrent callers share writes. A nil persister (no statePath) or a
// closed one has nothing to do.
func (p *persister) sync() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ticket := p.begun // writes that began before this call do not count
	for {
		if p.closed {
			return nil
		}
		if p.ended > ticket {
			return p.lastErr
		}
		if !p.writing {
			p.writing = true
			p.begun++
			n, path := p.begun, p.path
			p.mu.Unlock()
			err := p.writeTo(path)
			p.mu.Lock()
			p.writing = false
			p.ended, p.lastErr = n, err
			p.cond.Broadcast()
			continue
		}
		p.waiting++
		p.cond.Wait()
		p.waiting--
	}
}

// exclusive runs f while no write runs, and no write starts meanwhile.
func (p *persister) exclusive(f func()) {
	p.mu.Lock()
	for p.writing {
		p.cond.Wait()
	}
	p.writing = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.writing = false
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	f()
}

// writeTo writes a fresh snapshot to path. A write of the main file then
// removes the sibling files it now covers and adopts the ones of daemons
// that are gone. A failure is logged as "state persist failed".
func (p *persister) writeTo(path string) error {
	p.mu.Lock()
	covered := p.adopted
	p.mu.Unlock()
	data, err := p.e.renderState(&p.events, p.writer)
	if err == nil {
		err = replaceFile(path, data)
	}
	if err != nil {
		p.e.events.log("state persist failed", jsconfig.Field{Key: "error", Value: err.Error()})
		return err
	}
	if path != p.main {
		return nil
	}
	for _, f := range covered {
		if err := os.Remove(f); err == nil || errors.Is(err, fs.ErrNotExist) {
			p.mu.Lock()
			p.adopted = slices.DeleteFunc(p.adopted, func(s string) bool { return s == f })
			p.mu.Unlock()
		}
	}
	if !p.e.stopping.Load() && p.adoptSiblings() {
		p.request() // record the adopted orphans, then remove their files
	}
	return nil
}

// replaceFile writes data to a new temporary file (mode 0600, an
// unpredictable name) next to path, syncs it and renames it over path,
// so a crash leaves either the old or the new complete file, and no other
// user can read it or prepare its name.
func replaceFile(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+".*.tmp")
	if err != nil {
		return jsconfig.NodeError(errors.Unwrap(err), "open", path+".*.tmp")
	}
	tmp := f.Name()
	// CreateTemp already asks for 0600; the umask can only remove bits.
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
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return jsconfig.NodeError(err, "rename", tmp)
	}
	return nil
}

// useSibling moves this daemon's writes to its sibling file and writes it
// at once: for an owner that retires (its successor owns the state file
// from now on) and for a bootstrap that lost the control socket to
// another daemon. What this daemon still runs and stops stays recorded,
// and the owner of the state file is never overwritten.
func (p *persister) useSibling() {
	if p == nil {
		return
	}
	p.exclusive(func() { p.path = siblingPath(p.main, os.Getpid()) })
	_ = p.sync()
}

// useMain moves the writes of a takeover candidate that now owns the
// control socket to the state file, writes it, and removes the sibling
// file it wrote until then, once the state file holds everything.
func (p *persister) useMain() {
	if p == nil {
		return
	}
	var old string
	p.exclusive(func() { old, p.path = p.path, p.main })
	if err := p.sync(); err == nil && old != p.main {
		os.Remove(old)
	}
}

// finish runs at the end of a clean shutdown (and when a retired owner
// is done): orphans inherited from an earlier daemon that still live, and
// in the main file a pause or maintenance, are kept in the file; otherwise
// the file goes. Nothing is written after it.
func (p *persister) finish() (err error) {
	p.stopTimer()
	p.exclusive(func() {
		if p.closed {
			return
		}
		p.closed = true
		err = p.finishLocked()
	})
	return err
}

func (p *persister) finishLocked() error {
	live := LiveOrphans(p.e.orphanList())
	// A pause or maintenance outlives a planned restart: the main file
	// keeps it for the next daemon (a sibling never does, see
	// loadOrphans).
	var traffic jsconfig.Object
	if p.path == p.main {
		traffic = p.e.trafficObject(true)
	}
	if len(live) == 0 && traffic == nil {
		err := os.Remove(p.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return jsconfig.NodeError(err, "unlink", p.path)
		}
		p.removeAdopted()
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
	if traffic != nil {
		doc = append(doc, jsconfig.Field{Key: "traffic", Value: traffic})
	}
	raw, err := doc.MarshalJSON()
	if err != nil {
		return err
	}
	if err := replaceFile(p.path, indentJSON(raw)); err != nil {
		return err
	}
	p.removeAdopted()
	return nil
}

// removeAdopted removes the sibling files whose entries the main file now
// holds (or that held only processes that are gone).
func (p *persister) removeAdopted() {
	if p.path != p.main {
		return
	}
	p.mu.Lock()
	files := p.adopted
	p.adopted = nil
	p.mu.Unlock()
	for _, f := range files {
		os.Remove(f)
	}
}

// stateWriter is the state file's "writer": this daemon's pid and, when
// /proc shows it, its start time.
func stateWriter() jsconfig.Object {
	writer := jsconfig.Object{{Key: "pid", Value: os.Getpid()}}
	if ticks, ok := runtime.StartTime(os.Getpid()); ok {
		writer = append(writer, jsconfig.Field{Key: "startTime", Value: ticks})
	}
	return writer
}

// renderState renders the state file: the status object without
// "status" (plus the releases still starting or superseded, and the
// running hooks), every stored event, persistedAt, the restart settings
// of the config in force (jsconfig.RestartSettings, read back by
// re-adoption) and writer (see stateWriter); events already in cache are
// not rendered again. The result is byte for byte what
// indentJSON(stripKeys(…)) of the whole document gives.
func (e *Engine) renderState(cache *eventCache, writer jsconfig.Object) ([]byte, error) {
	raw, err := e.statusObject(true).MarshalJSON()
	if err != nil {
		return nil, err
	}
	head := indentJSON(stripKeys(raw, secretKeys))
	head = bytes.TrimSuffix(head, []byte("\n}\n"))
	w, err := writer.MarshalJSON()
	if err != nil {
		return nil, err
	}
	settings, err := json.Marshal(jsconfig.SettingsOf(e.currentPlan()))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(head) + cache.size + 256)
	b.Write(head)
	b.WriteString(",\n  \"events\": ")
	cache.render(&b, e.events.recent(0, false))
	b.WriteString(",\n  \"persistedAt\": \"" + runtime.ISOTime(time.Now()) + "\",\n  \"restartSettings\": ")
	if err := json.Indent(&b, settings, "  ", "  "); err != nil {
		return nil, err
	}
	b.WriteString(",\n  \"writer\": ")
	if err := json.Indent(&b, w, "  ", "  "); err != nil {
		return nil, err
	}
	b.WriteString("\n}\n")
	return b.Bytes(), nil
}

// eventCache keeps each stored event as the state file writes it (its
// secrets removed, indented for its place in the file), so a write
// renders only the events logged since the one before: with a full ring
// that is most of a snapshot's cost.
type eventCache struct {
	entries map[*byte][]byte // by the event's stored JSON, which never changes
	size    int
}

// render writes the events array at the indentation of a top-level key.
func (c *eventCache) render(b *bytes.Buffer, events []json.RawMessage) {
	if len(events) == 0 {
		b.WriteString("[]")
		c.entries, c.size = nil, 0
		return
	}
	next := make(map[*byte][]byte, len(events))
	size := 0
	b.WriteByte('[')
	for i, raw := range events {
		if len(raw) == 0 {
			continue
		}
		text, ok := c.entries[&raw[0]]
		if !ok {
			var t bytes.Buffer
			if json.Indent(&t, stripKeys(raw, secretKeys), "    ", "  ") != nil {
				t.Reset()
				t.Write(raw)
			}
			text = t.Bytes()
		}
		next[&raw[0]] = text
		size += len(text) + 6
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		b.Write(text)
	}
	b.WriteString("\n  ]")
	c.entries, c.size = next, size
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

// loadOrphans reads the previous daemon's state file, and the sibling
// files of takeovers whose daemon is gone, at start-up and reports the
// processes of them that still run (docs/cli.md#orphans). They are never
// signalled. A file that is not trusted is moved aside, unused.
func (e *Engine) loadOrphans(path string) {
	_, list := e.loadState(path)
	e.addOrphans(list)
}

// loadState reads the state at start-up as loadOrphans does and returns
// the recorded processes, without reporting them yet, and the main
// file's content for re-adoption (nil when it has none).
func (e *Engine) loadState(path string) (saved *savedState, list []Orphan) {
	var adopted []string
	for _, f := range readStateFiles(path) {
		var untrusted *UntrustedStateError
		switch {
		case errors.As(f.err, &untrusted):
			e.setAside(f.path, f.err)
		case f.err != nil:
			e.events.log("state file unreadable", jsconfig.Field{Key: "error", Value: f.err.Error()}, jsconfig.Field{Key: "statePath", Value: f.path})
		default:
			list = append(list, f.entries...)
			if f.sibling {
				adopted = append(adopted, f.path)
			} else {
				// Only the main file says how traffic was left: a sibling
				// is a retired owner's or a candidate's, whose successor
				// (or owner) may have resumed since.
				e.restoreTraffic(f.traffic, trafficFromStateFile)
				var err error
				switch {
				case len(f.entries) == 0:
				case f.writer != 0 && f.writer != os.Getpid():
					// Its processes are that daemon's, not left behind.
					err = fmt.Errorf("the daemon that wrote the state file (pid %d) still runs", f.writer)
				default:
					saved, err = parseSavedState(f.raw)
				}
				if err != nil {
					e.events.log("re-adoption refused", jsconfig.Field{Key: "reason", Value: err.Error()})
				}
			}
		}
	}
	if e.persist != nil {
		e.persist.mu.Lock()
		e.persist.adopted = append(e.persist.adopted, adopted...)
		e.persist.mu.Unlock()
	}
	return saved, list
}

// addOrphans records the live processes of list as orphans, once each,
// and reports them.
func (e *Engine) addOrphans(list []Orphan) {
	var added []Orphan
	e.mu.Lock()
	for _, o := range list {
		if !o.Alive() {
			continue
		}
		o = o.confirmed()
		known := false
		for _, k := range e.orphans {
			if k.Pid == o.Pid && (k.StartTime == o.StartTime || k.StartTime == 0 || o.StartTime == 0) {
				known = true
				break
			}
		}
		if !known {
			e.orphans = append(e.orphans, o)
			added = append(added, o)
		}
	}
	e.mu.Unlock()
	for _, o := range added {
		e.events.log("orphaned managed process detected", jsconfig.Field{Key: "pid", Value: o.Pid}, jsconfig.Field{Key: "processId", Value: o.ID}, jsconfig.Field{Key: "releaseId", Value: o.releaseValue()})
	}
	if len(added) > 0 {
		e.events.log("orphaned processes from a previous daemon", jsconfig.Field{Key: "count", Value: len(added)}, jsconfig.Field{Key: "hint", Value: orphanHint})
	}
}

// adoptSiblings takes over the sibling files of takeovers whose daemon
// died (a candidate that crashed, a retired owner that is done): their
// live processes become this daemon's orphans, and the files go after the
// next write of the state file. It reports whether anything was adopted.
func (p *persister) adoptSiblings() bool {
	e := p.e
	known := p.adoptedFiles()
	var fresh []string
	for _, f := range siblingFiles(p.main) {
		if !slices.Contains(known, f) && f != siblingPath(p.main, os.Getpid()) {
			fresh = append(fresh, f)
		}
	}
	if len(fresh) == 0 {
		return false
	}
	var found []Orphan
	var files []string
	for _, f := range readStatePaths(fresh, p.main) {
		var untrusted *UntrustedStateError
		switch {
		case errors.As(f.err, &untrusted):
			e.setAside(f.path, f.err)
			continue
		case f.err != nil:
			continue // unreadable: left for the operator
		}
		found = append(found, f.entries...)
		files = append(files, f.path)
	}
	if len(files) == 0 {
		return false
	}
	e.addOrphans(found)
	p.mu.Lock()
	p.adopted = append(p.adopted, files...)
	p.mu.Unlock()
	return true
}

func (p *persister) adoptedFiles() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.adopted...)
}

// setAside moves a state file that is not trusted out of the way, so
// none of it is used and the operator can still look at it, and logs
// where it went.
func (e *Engine) setAside(path string, cause error) {
	var moved any
	dest := path + ".untrusted"
	for i := 1; i < 100; i++ {
		if _, err := os.Lstat(dest); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dest = path + ".untrusted." + strconv.Itoa(i)
	}
	if err := os.Rename(path, dest); err == nil {
		moved = dest
	}
	e.events.log("state file untrusted", jsconfig.Field{Key: "error", Value: cause.Error()}, jsconfig.Field{Key: "movedTo", Value: moved}, jsconfig.Field{Key: "statePath", Value: path})
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
