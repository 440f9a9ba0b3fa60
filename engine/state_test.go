package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

func TestStripKeys(t *testing.T) {
	in := `{"a":1,"command":"x","b":{"env":{"K":"v"},"c":[{"logs":[1,2],"d":"e\"}"},{"cwd":"/x"}],"output":null},"children":[],"z":"\u00e9<>"}`
	want := `{"a":1,"b":{"c":[{"d":"e\"}"},{}]},"z":"\u00e9<>"}`
	if got := string(stripKeys([]byte(in), secretKeys)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Dropping the first member does not leave a leading comma.
	if got := string(stripKeys([]byte(`{"command":1,"x":[1, 2 ,3]}`), secretKeys)); got != `{"x":[1,2,3]}` {
		t.Fatalf("got %s", got)
	}
}

// readStateFile returns the processes one state file records, in the
// order of its orphans, each release's processes, then services and
// singletons. Liveness is not checked here. Errors as readStateDoc.
func readStateFile(path string) ([]Orphan, error) {
	doc, err := readStateDoc(path)
	if doc == nil {
		return nil, err
	}
	return doc.entries, nil
}

// stateSnapshot is what a state file write of e holds, rendered afresh.
func (e *Engine) stateSnapshot() ([]byte, error) { return e.renderState(&eventCache{}, stateWriter()) }

func writeState(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadStateFile(t *testing.T) {
	me := os.Getpid()
	ticks, ok := runtime.StartTime(me)
	if !ok {
		t.Fatal("no start time for the test process")
	}
	// A Node.js state file: no startTime, pid liveness alone.
	node := `{"activeReleaseId":"c2","orphans":[{"id":"old","pid":` + strconv.Itoa(me) + `,"releaseId":null}],
	  "releases":[{"releaseId":"c2","processes":[{"id":"web","pid":` + strconv.Itoa(me) + `},{"id":"gone"}]}],
	  "services":[{"id":"beacon","process":{"id":"beacon","pid":` + strconv.Itoa(me) + `}}],"singletons":[]}`
	list, err := readStateFile(writeState(t, node))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range list {
		rel := "null"
		if o.ReleaseID != nil {
			rel = *o.ReleaseID
		}
		got = append(got, o.ID+"/"+rel)
	}
	if want := []string{"old/null", "web/c2", "beacon/null"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("candidates %v, want %v", got, want)
	}
	if live := LiveOrphans(list); len(live) != 3 {
		t.Fatalf("live %v", live)
	}
	// A Go state file: the recorded start time must match.
	goFile := `{"releases":[{"releaseId":"r","processes":[{"id":"a","pgid":` + strconv.Itoa(me) + `,"pid":` + strconv.Itoa(me) + `,"startTime":` + strconv.FormatUint(ticks, 10) + `},
	  {"id":"recycled","pid":` + strconv.Itoa(me) + `,"startTime":` + strconv.FormatUint(ticks+1, 10) + `}]}],"services":[],"singletons":[]}`
	list, _ = readStateFile(writeState(t, goFile))
	live := LiveOrphans(list)
	if len(list) != 2 || len(live) != 1 || live[0].ID != "a" || live[0].Pgid != me || live[0].StartTime != ticks {
		t.Fatalf("candidates %+v live %+v", list, live)
	}
	// No state: a missing file silently, a broken one with a reason.
	if list, err := readStateFile(filepath.Join(t.TempDir(), "none.json")); list != nil || err != nil {
		t.Fatalf("missing file: %v %v", list, err)
	}
	for _, broken := range []string{"", `{"releases": [`, "not json", "\x00\x00"} {
		list, err := readStateFile(writeState(t, broken))
		var unreadable *ErrStateUnreadable
		if list != nil || err == nil || !asUnreadable(err, &unreadable) {
			t.Errorf("%q: %v %v", broken, list, err)
		}
	}
	// An unexpected shape yields nothing, as with the reference.
	for _, odd := range []string{`{"releases":[]}`, `[]`, `{"releases":[{"processes":null}],"services":[],"singletons":[]}`, `{"releases":[],"services":[{"id":"x"}],"singletons":[]}`, `null`, `5`} {
		list, err := readStateFile(writeState(t, odd))
		if list != nil || err != nil {
			t.Errorf("%s: %v %v", odd, list, err)
		}
	}
}

func asUnreadable(err error, target **ErrStateUnreadable) bool {
	u, ok := err.(*ErrStateUnreadable)
	*target = u
	return ok
}

// The state file of a daemon: the status and events without commands,
// working directories, environments or output, with pgid and startTime.
func TestStateSnapshotIsSecretSafe(t *testing.T) {
	dir := t.TempDir()
	e := New(Options{Plan: &jsconfig.Plan{Application: "shop", StatePath: filepath.Join(dir, "state.json")}})
	spec := runtime.Spec{ID: "worker", Command: "SECRET_TOKEN=abc exec sleep 60", Cwd: dir, Dir: dir, Env: []string{"DB_PASSWORD=hunter2"}, OutputLines: 10}
	proc := runtime.New(spec, runtime.Options{})
	if err := proc.Start(runtime.ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop() })
	r := newRelease("v1", dir, "abc")
	r.procs = []*instance{{id: "worker", def: &jsconfig.Process{ID: "worker"}, proc: proc}}
	r.setState(stateActive)
	e.releases = []*Release{r}
	e.events.log("process started", jsconfig.Field{Key: "command", Value: spec.Command}, jsconfig.Field{Key: "pid", Value: 1})
	e.orphans = []Orphan{{ID: "old", Pid: os.Getpid(), Pgid: 77, StartTime: mustTicks(t)}}
	data, err := e.stateSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, secret := range []string{"SECRET_TOKEN", "hunter2", `"command"`, `"cwd"`, `"logs"`, `"children"`} {
		if strings.Contains(text, secret) {
			t.Errorf("the state file holds %s:\n%s", secret, text)
		}
	}
	if !strings.HasSuffix(text, "}\n") || !strings.Contains(text, "\n  \"activeReleaseId\": null,\n") {
		t.Fatalf("format:\n%s", text)
	}
	var doc struct {
		Orphans  []map[string]any
		Releases []struct {
			Processes []map[string]any
		}
		Events      []map[string]any
		PersistedAt string
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	p := doc.Releases[0].Processes[0]
	ticks, _ := runtime.StartTime(proc.Status().PID)
	if p["pgid"] != p["pid"] || p["startTime"] != float64(ticks) || ticks == 0 {
		t.Fatalf("process entry %v (start time %d)", p, ticks)
	}
	if o := doc.Orphans[0]; o["pgid"] != 77.0 || o["startTime"] == nil || len(doc.Events) != 1 || doc.PersistedAt == "" {
		t.Fatalf("orphans %v, events %v, persistedAt %q", doc.Orphans, doc.Events, doc.PersistedAt)
	}
	// The status reply keeps the orphan shape {id, pid, releaseId}.
	status, _ := e.statusJSON()
	if !strings.Contains(string(status), `"orphans":[{"id":"old","pid":`+strconv.Itoa(os.Getpid())+`,"releaseId":null}]`) {
		t.Fatalf("status orphans: %s", status)
	}
}

func mustTicks(t *testing.T) uint64 {
	ticks, ok := runtime.StartTime(os.Getpid())
	if !ok {
		t.Fatal("no start time")
	}
	return ticks
}

// A crash mid-write leaves a partial temporary file next to a complete
// state file; readers never see the partial one.
func TestStateWriteIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	e := New(Options{Plan: &jsconfig.Plan{Application: "shop", StatePath: path}})
	p := newPersister(e, path)
	p.sync()
	first, err := os.ReadFile(path)
	if err != nil || !json.Valid(first) {
		t.Fatalf("first write: %v %q", err, first)
	}
	// What a crash in the middle of the next write leaves behind.
	os.WriteFile(path+".999.1.tmp", first[:len(first)/2], 0o644)
	if _, err := readStateFile(path); err != nil {
		t.Fatal(err)
	}
	p.sync()
	second, _ := os.ReadFile(path)
	if !json.Valid(second) {
		t.Fatalf("second write %q", second)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("files: %v (our temporary files must not stay)", entries)
	}
	// A write that cannot happen is logged and changes nothing.
	bad := newPersister(e, filepath.Join(dir, "missing", "state.json"))
	bad.sync()
	last := string(e.events.recent(1, true)[0])
	if !strings.Contains(last, `"message":"state persist failed"`) || !strings.Contains(last, `{"error":"ENOENT: no such file or directory, open '`) {
		t.Fatalf("event %s", last)
	}
	// finish removes the file when no inherited orphan lives.
	if err := p.finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("state file after a clean shutdown: %v", err)
	}
}

// With live inherited orphans, a clean shutdown leaves only them.
func TestStateFinishKeepsLiveOrphans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	e := New(Options{Plan: &jsconfig.Plan{StatePath: path}})
	rel := "c2"
	e.orphans = []Orphan{{ID: "jobs", Pid: os.Getpid(), ReleaseID: &rel}, {ID: "dead", Pid: 1 << 30}}
	p := newPersister(e, path)
	if err := p.finish(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	want := "{\n  \"activeReleaseId\": null,\n  \"orphans\": [\n    {\n      \"id\": \"jobs\",\n      \"pid\": " + strconv.Itoa(os.Getpid()) +
		",\n      \"releaseId\": \"c2\"\n    }\n  ],\n  \"releases\": [],\n  \"services\": [],\n  \"singletons\": []\n}\n"
	if string(data) != want {
		t.Fatalf("got\n%s\nwant\n%s", data, want)
	}
}

// Concurrent syncs share writes: callers that ask while a write runs are
// served by the next one, and each returns the outcome of a write that
// began after it asked.
func TestPersisterSyncSharesWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	e := New(Options{Plan: &jsconfig.Plan{Application: "shop", StatePath: path}})
	p := newPersister(e, path)
	release := make(chan struct{})
	held := make(chan struct{})
	go p.exclusive(func() { close(held); <-release }) // a write in flight
	<-held
	const callers = 10
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.sync()
		}()
	}
	// Every caller must be waiting behind the write in flight before it
	// ends: a caller that arrived after the next write began would need a
	// write of its own, and the count below would measure the scheduler.
	waitFor(t, "the callers to wait", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.waiting == callers })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Lock()
	writes := p.begun
	p.mu.Unlock()
	if writes < 1 || writes > 2 {
		t.Fatalf("%d callers caused %d writes", callers, writes)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	// A write that fails is every waiting caller's error.
	bad := newPersister(e, filepath.Join(dir, "missing", "state.json"))
	if err := bad.sync(); err == nil || !strings.Contains(err.Error(), "ENOENT") {
		t.Fatalf("failed write: %v", err)
	}
	// A finished persister writes nothing more.
	if err := p.finish(); err != nil {
		t.Fatal(err)
	}
	if err := p.sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a write after finish: %v", err)
	}
}

// The state file lists what status does not: a release still starting
// and an instance superseded by a deploy of the same id. Status itself
// is unchanged.
func TestStateSnapshotRecordsStartingAndSuperseded(t *testing.T) {
	dir := t.TempDir()
	e := New(Options{Plan: &jsconfig.Plan{Application: "shop", StatePath: filepath.Join(dir, "state.json")}})
	start := func(id string) *instance {
		proc := runtime.New(runtime.Spec{ID: id, Command: "exec sleep 60", Dir: dir, OutputLines: 10}, runtime.Options{})
		if err := proc.Start(runtime.ReasonDeploy); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(proc.Stop)
		return &instance{id: id, def: &jsconfig.Process{ID: id}, proc: proc}
	}
	active, old, next := newRelease("v1", dir, "v1"), newRelease("v1", dir, "v1"), newRelease("v2", dir, "v2")
	active.setState(stateActive)
	old.setState(stateDraining)
	active.procs = []*instance{start("web")}
	old.procs = []*instance{start("web")}
	next.procs = []*instance{start("worker")}
	e.releases, e.active = []*Release{active}, active
	e.retiring[old] = struct{}{}
	e.starting[next] = struct{}{}
	data, err := e.stateSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Releases []struct {
			ReleaseID string
			State     string
			Processes []map[string]any
		}
		Writer map[string]any
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range doc.Releases {
		got = append(got, fmt.Sprintf("%s/%s/%v", r.ReleaseID, r.State, r.Processes[0]["pid"]))
	}
	want := []string{
		fmt.Sprintf("v1/active/%d", active.procs[0].proc.PID()),
		fmt.Sprintf("v2/starting/%d", next.procs[0].proc.PID()),
		fmt.Sprintf("v1/draining/%d", old.procs[0].proc.PID()),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("releases in the state file %v, want %v", got, want)
	}
	if doc.Writer["pid"] != float64(os.Getpid()) || doc.Writer["startTime"] != float64(mustTicks(t)) {
		t.Fatalf("writer %v", doc.Writer)
	}
	status, _ := e.statusJSON()
	if strings.Count(string(status), `"releaseId":`) != 1 || strings.Contains(string(status), "writer") {
		t.Fatalf("status shows more than the active release: %s", status)
	}
	list, err := readStateFile(writeState(t, string(data)))
	if err != nil || len(LiveOrphans(list)) != 3 {
		t.Fatalf("the reader finds %v %v", list, err)
	}
}

// BenchmarkStateSync is the cost a spawn adds before its child runs: one
// state file write (snapshot with a full event ring, fsync, rename) for a
// daemon with four running processes.
func BenchmarkStateSync(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "state.json")
	e := New(Options{Plan: &jsconfig.Plan{Application: "shop", StatePath: path}})
	r := newRelease("v1", dir, "v1")
	r.setState(stateActive)
	for _, id := range []string{"beacon", "worker#0", "worker#1", "web"} {
		proc := runtime.New(runtime.Spec{ID: id, Command: "exec sleep 60", Dir: dir, OutputLines: 10}, runtime.Options{})
		if err := proc.Start(runtime.ReasonDeploy); err != nil {
			b.Fatal(err)
		}
		defer proc.Stop()
		r.procs = append(r.procs, &instance{id: id, def: &jsconfig.Process{ID: id}, proc: proc})
	}
	e.releases, e.active = []*Release{r}, r
	for i := 0; i < EventCapacity; i++ {
		e.events.log("process started", jsconfig.Field{Key: "processId", Value: "worker#0"}, jsconfig.Field{Key: "releaseId", Value: "v1"}, jsconfig.Field{Key: "pid", Value: 4242}, jsconfig.Field{Key: "reason", Value: "deploy"})
	}
	p := newPersister(e, path)
	fi := func() int64 { st, _ := os.Stat(path); return st.Size() }
	for b.Loop() {
		if err := p.sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(fi())/1024, "file-KiB")
}

// A snapshot rendered with cached events is byte for byte the whole
// document stripped of secrets and indented, also after new events.
func TestRenderStateMatchesTheWholeDocument(t *testing.T) {
	e := New(Options{Plan: &jsconfig.Plan{Application: "shop", StatePath: filepath.Join(t.TempDir(), "s")}})
	whole := func(data []byte) []byte {
		// The reference rendering: one document, stripped and indented.
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		raw, _ := e.statusObject(true).MarshalJSON()
		settings, _ := json.Marshal(jsconfig.SettingsOf(e.plan))
		obj := strings.TrimSuffix(string(raw), "}") + `,"events":` + string(joinEvents(e.events.recent(0, false))) +
			`,"persistedAt":` + string(doc["persistedAt"]) + `,"restartSettings":` + string(settings) + `,"writer":` + strings.Join(strings.Fields(string(doc["writer"])), "") + "}"
		return indentJSON(stripKeys([]byte(obj), secretKeys))
	}
	cache := &eventCache{}
	for round := 0; round < 3; round++ {
		for i := 0; i < 5; i++ {
			e.events.log("release startup process status", jsconfig.Field{Key: "command", Value: "SECRET=1 run"}, jsconfig.Field{Key: "logs", Value: []string{"x"}}, jsconfig.Field{Key: "pid", Value: round*10 + i})
		}
		got, err := e.renderState(cache, stateWriter())
		if err != nil {
			t.Fatal(err)
		}
		if want := whole(got); !bytes.Equal(got, want) {
			t.Fatalf("round %d:\n%s\nwant\n%s", round, got, want)
		}
		if strings.Contains(string(got), "SECRET") || len(cache.entries) != (round+1)*5 {
			t.Fatalf("round %d: %d cached\n%s", round, len(cache.entries), got)
		}
	}
	empty := New(Options{Plan: &jsconfig.Plan{Application: "shop"}})
	if got, _ := empty.stateSnapshot(); !strings.Contains(string(got), "\n  \"events\": [],\n") || !json.Valid(got) {
		t.Fatalf("no events:\n%s", got)
	}
}
