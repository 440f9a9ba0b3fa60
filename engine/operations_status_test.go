package engine

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

// The operations reply names the running operation and the queue in
// order, with sorted keys; a free lock has running null.
func TestOperationsJSON(t *testing.T) {
	e := &Engine{}
	if got, err := e.operationsJSON(); err != nil || string(got) != `{"queued":[],"running":null}` {
		t.Fatalf("free lock: %s %v", got, err)
	}
	if err := e.ops.acquireAs(&operation{command: "deploy", clientPID: 41}); err != nil {
		t.Fatal(err)
	}
	e.ops.setRelease("v2")
	acquired := make(chan struct{})
	go func() {
		if err := e.ops.acquireAs(&operation{command: "restart", clientPID: 42}); err == nil {
			e.ops.release()
		}
		close(acquired)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, queued := e.ops.snapshot()
		if len(queued) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restart was not queued")
		}
		time.Sleep(time.Millisecond)
	}
	raw, err := e.operationsJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Queued  []map[string]any
		Running map[string]any
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	r, q := got.Running, got.Queued
	if r["command"] != "deploy" || r["releaseId"] != "v2" || r["clientPid"] != 41.0 || r["runningMs"] == nil || r["since"] == nil ||
		len(q) != 1 || q[0]["command"] != "restart" || q[0]["releaseId"] != nil || q[0]["clientPid"] != 42.0 || q[0]["waitingMs"] == nil {
		t.Fatalf("operations: %s", raw)
	}
	shape := regexp.MustCompile(`^\{"queued":\[\{"clientPid":42,"command":"restart","releaseId":null,"since":"[0-9T:.Z-]+","waitingMs":\d+\}\],` +
		`"running":\{"clientPid":41,"command":"deploy","releaseId":"v2","runningMs":\d+,"since":"[0-9T:.Z-]+"\}\}$`)
	if !shape.Match(raw) {
		t.Fatalf("keys are not sorted: %s", raw)
	}
	e.ops.release()
	<-acquired
}
