package engine

import (
	"os"
	"strconv"
	"strings"

	"github.com/rollbridge/rollbridge/runtime"
)

// DaemonOOMScoreAdj is the oom_score_adj the daemon gives itself when
// nobody chose one (docs/processes.md#61-the-daemon-and-the-oom-killer):
// the kernel's OOM killer then picks an application long before the
// supervisor, whose death would take the proxy port with it. Not -1000:
// a daemon that leaks must still be killable.
const DaemonOOMScoreAdj = -900

// oomScorePath is the daemon's own oom_score_adj (a variable for tests).
var oomScorePath = "/proc/self/oom_score_adj"

// lowerOOMScore lowers the daemon's oom_score_adj to DaemonOOMScoreAdj
// when it is 0, the value nobody chose (a unit's OOMScoreAdjust= or a
// parent's choice is kept), and makes the processes it starts run with
// the value it had. Lowering needs CAP_SYS_RESOURCE; without it nothing
// changes. Neither outcome is logged, so the daemon log's first lines
// stay as scripts know them; the docs say how to check. It reports
// whether it lowered the value.
func lowerOOMScore() bool {
	raw, err := os.ReadFile(oomScorePath)
	if err != nil {
		return false
	}
	current, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || current != 0 {
		return false // chosen by whoever started the daemon: theirs to decide
	}
	if err := os.WriteFile(oomScorePath, []byte(strconv.Itoa(DaemonOOMScoreAdj)), 0); err != nil {
		return false
	}
	runtime.SetChildOOMScoreAdj(current)
	return true
}
