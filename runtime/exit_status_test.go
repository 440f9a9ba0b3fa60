package runtime

import (
	"errors"
	"os/exec"
	"testing"
)

// ExitStatus tells an exit code from a killing signal, and neither from a
// wait that failed.
func TestExitStatus(t *testing.T) {
	run := func(script string) error { return exec.Command("/bin/sh", "-c", script).Run() }
	if code, sig := ExitStatus(run("exit 0")); code == nil || *code != 0 || sig != nil {
		t.Errorf("exit 0: %v %v", code, sig)
	}
	if code, sig := ExitStatus(run("exit 3")); code == nil || *code != 3 || sig != nil {
		t.Errorf("exit 3: %v %v", code, sig)
	}
	if code, sig := ExitStatus(run("kill -KILL $$")); code != nil || sig == nil || *sig != "SIGKILL" {
		t.Errorf("kill -KILL: %v %v", code, sig)
	}
	if code, sig := ExitStatus(errors.New("wait: no child")); code != nil || sig != nil {
		t.Errorf("not an exit: %v %v", code, sig)
	}
}
