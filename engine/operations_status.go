package engine

import (
	"sort"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
	"github.com/rollbridge/rollbridge/runtime"
)

// operationsJSON answers the operations command
// (docs/cli.md#control-protocol): the operation that holds the operation
// lock and those queued behind it, in order. It never waits, so a CLI
// can tell whether its own request runs or waits (by its pid) and what
// it waits for.
func (e *Engine) operationsJSON() ([]byte, error) {
	running, held, queued := e.ops.snapshot()
	now := time.Now()
	describe := func(op operation, elapsedKey string) jsconfig.Object {
		var pid, release, command any
		if op.clientPID != 0 {
			pid = op.clientPID
		}
		if op.releaseID != "" {
			release = op.releaseID
		}
		if op.command != "" {
			command = op.command
		}
		obj := jsconfig.Object{{Key: "clientPid", Value: pid}, {Key: "command", Value: command}, {Key: "releaseId", Value: release}}
		if op.since.IsZero() {
			return obj
		}
		obj = append(obj, jsconfig.Field{Key: elapsedKey, Value: now.Sub(op.since).Milliseconds()}, jsconfig.Field{Key: "since", Value: runtime.ISOTime(op.since)})
		sort.SliceStable(obj, func(i, j int) bool { return obj[i].Key < obj[j].Key }) // sorted, as every reply
		return obj
	}
	list := make([]jsconfig.Object, 0, len(queued))
	for _, op := range queued {
		list = append(list, describe(op, "waitingMs"))
	}
	var run any
	switch {
	case running != nil:
		run = describe(*running, "runningMs")
	case held:
		run = describe(operation{}, "runningMs")
	}
	return jsconfig.Object{{Key: "queued", Value: list}, {Key: "running", Value: run}}.MarshalJSON()
}
