package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// activeStopConfirmation asks a person at a terminal before a stop takes
// the active release, and with it the site, offline
// (docs/cli.md#stop). It asks only when stdin and stderr are both
// terminals, so scripts and pipes are never prompted; releaseID "" is the
// active release. It returns the id of the release the person agreed to
// stop ("" when nothing was asked); a refusal has already been reported
// when it returns exitCode(1).
func activeStopConfirmation(stdin io.Reader, stderr io.Writer, releaseID string) func(status []byte) (string, error) {
	return func(status []byte) (string, error) {
		in, ok := stdin.(*os.File)
		if !ok || !isTerminal(in) || !isTerminal(stderr) {
			return "", nil
		}
		var s struct {
			Active *string `json:"activeReleaseId"`
		}
		if json.Unmarshal(status, &s) != nil || s.Active == nil || *s.Active == "" {
			return "", nil // nothing is active: the daemon answers "Release not found"
		}
		if releaseID != "" && releaseID != *s.Active {
			return "", nil // a draining or stopped release: the site keeps serving
		}
		shown := termText(*s.Active) // the daemon's text, on a person's terminal
		fmt.Fprintf(stderr, "Release %s is the active release: stopping it takes the site offline, and the proxy answers every request with 503 until the next deploy or rollback.\n", shown)
		fmt.Fprintf(stderr, "Stop release %s? [y/N] ", shown)
		answer, _ := bufio.NewReader(in).ReadString('\n')
		switch strings.ToLower(strings.TrimSpace(answer)) {
		case "y", "yes":
			return *s.Active, nil
		}
		if !strings.HasSuffix(answer, "\n") {
			fmt.Fprintln(stderr) // end of input: end the prompt's line
		}
		fmt.Fprintf(stderr, "Not stopped: nothing was sent to the daemon, release %s keeps serving. Pass --yes to stop without this question.\n", shown)
		return "", exitCode(1)
	}
}
