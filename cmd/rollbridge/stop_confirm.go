package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rollbridge/rollbridge/engine/control"
)

// activeStopConfirmation asks a person at a terminal before a stop takes
// the active release, and with it the site, offline
// (docs/cli.md#stop). The caller asks only when stdout is a terminal and
// --json was not given; this asks only when stdin and stderr are
// terminals too, so scripts and pipes are never prompted. releaseID "" is
// the active release; status is the daemon's status read before, or
// statusErr why it could not be read. It returns the id of the release
// the person agreed to stop ("" when nothing was asked); a refusal has
// already been reported when it returns exitCode(1). Nobody answering
// within stopConfirmTimeout is a refusal.
func activeStopConfirmation(stdin io.Reader, stderr io.Writer, releaseID string) func(status []byte, statusErr error) (string, error) {
	return func(status []byte, statusErr error) (string, error) {
		term, ok := stdin.(*os.File)
		if !ok || !isTerminal(term) || !isTerminal(stderr) {
			return "", nil
		}
		if statusErr != nil {
			return "", statusUnreadable(statusErr)
		}
		in := newTimedAnswer(term, stopConfirmTimeout())
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
			fmt.Fprintln(stderr, in.note()) // end of input or no answer: end the prompt's line
		}
		fmt.Fprintf(stderr, "Not stopped: nothing was sent to the daemon, release %s keeps serving. Pass --yes to stop without this question.\n", shown)
		return "", exitCode(1)
	}
}

// stopConfirmTimeout is how long the question waits for an answer: a
// terminal left open (a forgotten ssh session, screen, a CI runner with a
// pseudo-terminal) must not hold a stop, and whatever runs it, forever.
// The unexported _ROLLBRIDGE_TEST_STOP_CONFIRM_TIMEOUT (a Go duration)
// shortens it for the tests.
func stopConfirmTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("_ROLLBRIDGE_TEST_STOP_CONFIRM_TIMEOUT")); err == nil && d > 0 {
		return d
	}
	return 60 * time.Second
}

// statusUnreadable is the refusal of a stop that would have asked but
// could not read the daemon's status to know what it would stop: it
// fails closed. No daemon at all is said as such, with its hint.
func statusUnreadable(err error) error {
	var dial *control.DialError
	if errors.As(err, &dial) {
		return err
	}
	return fmt.Errorf("could not read the daemon's status to confirm (%w); nothing was sent to the daemon; pass --yes to stop anyway", err)
}

// errNoAnswer ends a read of timedAnswer whose time is up.
var errNoAnswer = errors.New("no answer")

// timedAnswer reads the answer from a terminal until a deadline.
type timedAnswer struct {
	r        io.Reader
	wait     time.Duration
	expired  <-chan time.Time
	timedOut bool
}

func newTimedAnswer(r io.Reader, wait time.Duration) *timedAnswer {
	return &timedAnswer{r: r, wait: wait, expired: time.After(wait)}
}

// Read reads in a goroutine, which a read nobody answers leaves blocked
// until the command exits.
func (t *timedAnswer) Read(p []byte) (int, error) {
	type result struct {
		n   int
		err error
	}
	buf := make([]byte, len(p))
	done := make(chan result, 1)
	go func() {
		n, err := t.r.Read(buf)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return copy(p, buf[:r.n]), r.err
	case <-t.expired:
		t.timedOut = true
		return 0, errNoAnswer
	}
}

// note is the line after the question when the time ran out, else "".
func (t *timedAnswer) note() string {
	if !t.timedOut {
		return ""
	}
	return "\nNo answer within " + strconv.FormatFloat(t.wait.Seconds(), 'f', -1, 64) + " s."
}
