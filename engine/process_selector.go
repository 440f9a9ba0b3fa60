package engine

import "strings"

// SelectsProcess reports whether a process selector (logs --process, the
// follow command's processId) picks the instance with this id: its exact
// id, or, for a process id, every replica of it ("worker" picks "worker#0"
// and "worker#1", as restart --process does). Process ids cannot contain
// "#", so "worker" never picks a process named "worker#x".
func SelectsProcess(selector, instanceID string) bool {
	if instanceID == selector {
		return true
	}
	base, replica, ok := strings.Cut(instanceID, "#")
	if !ok || base != selector || replica == "" {
		return false
	}
	for _, c := range replica {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
