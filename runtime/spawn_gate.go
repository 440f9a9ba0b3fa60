package runtime

import (
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
)

// gateScript holds a new child until its owner has recorded it: the
// shell reads one line from descriptor 3, closes it and then becomes
// `/bin/sh -c <command>` with exec, so the pid, the process group and the
// start time the owner recorded stay the command's. When the owner dies
// before it opened the gate, the read meets end of file and the child
// exits without running anything: a crash between a spawn and its record
// leaves nothing behind that nobody knows about.
//
// The gate's line may carry an oom_score_adj for the command (see
// SetChildOOMScoreAdj): the shell writes it to /proc/self/oom_score_adj
// before the exec, so no command starts with the daemon's own, lowered
// value. Raising one's own value needs no privilege, also after a switch
// to another user.
const gateScript = `read -r rollbridge_gate rollbridge_oom <&3 || exit 111; exec 3<&-; [ -z "$rollbridge_oom" ] || { echo "$rollbridge_oom" > /proc/self/oom_score_adj; } 2>/dev/null; exec /bin/sh -c "$1"`

// gateExitCode is how a gated child ends whose owner never opened it.
const gateExitCode = 111

// gate is the owner's end of a gated child's descriptor 3.
type gate struct{ w *os.File }

// gatedCommand returns the command that runs `/bin/sh -c command` behind
// a gate. The caller starts it, closes the returned read end (the child
// has its own copy) and opens or drops the gate.
func gatedCommand(command string) (cmd *exec.Cmd, readEnd *os.File, g *gate, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd = exec.Command("/bin/sh", "-c", gateScript, "sh", command)
	cmd.ExtraFiles = []*os.File{r}
	return cmd, r, &gate{w: w}, nil
}

// open lets the child run its command, with the oom_score_adj set by
// SetChildOOMScoreAdj.
func (g *gate) open() {
	line := "go\n"
	if v := childOOMScoreAdj.Load(); v != nil {
		line = "go " + strconv.Itoa(*v) + "\n"
	}
	_, _ = g.w.Write([]byte(line))
	g.w.Close()
}

// childOOMScoreAdj is the oom_score_adj every gated child sets for itself
// before its command runs; nil: it keeps the one it inherited.
var childOOMScoreAdj atomic.Pointer[int]

// SetChildOOMScoreAdj makes every child started from now on (processes,
// lifecycle hooks, gated commands) run with oom_score_adj v instead of the
// value it inherits from the daemon: a daemon that lowered its own, so
// the kernel's OOM killer spares it, does not pass that on to the apps
// (docs/processes.md#61-the-daemon-and-the-oom-killer).
func SetChildOOMScoreAdj(v int) { childOOMScoreAdj.Store(&v) }

// drop closes the gate's pipe without opening it: the child exits with
// gateExitCode. It is used when the start failed.
func (g *gate) drop() { g.w.Close() }

// Spawn describes a child the runtime has just started: the main command
// (Hook "") or a lifecycle hook ("quiet command", "drain command", "stop
// command"). Its pid leads its own process group.
type Spawn struct {
	ID        string // the instance id of the process
	Hook      string
	PID       int
	StartTime uint64 // clock ticks after boot, 0 when unknown
}

// Hook is a lifecycle hook command that is running now.
type Hook struct {
	Label     string // "quiet command", "drain command" or "stop command"
	PID       int    // also its process group
	StartTime uint64 // clock ticks after boot, 0 when unknown
}

// Hooks lists the lifecycle hooks of the process that are running, in
// start order; a hook that ended is no longer listed.
func (p *Process) Hooks() []Hook {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Hook(nil), p.hooks...)
}

func (p *Process) addHook(h Hook) {
	p.mu.Lock()
	p.hooks = append(p.hooks, h)
	p.mu.Unlock()
}

func (p *Process) removeHook(pid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, h := range p.hooks {
		if h.PID == pid {
			p.hooks = append(p.hooks[:i], p.hooks[i+1:]...)
			return
		}
	}
}

// spawned tells the owner about a new child, synchronously: when it
// returns, the owner has recorded it and the gate may open.
func (p *Process) spawned(s Spawn) {
	if p.onSpawn != nil {
		p.onSpawn(s)
	}
}
