package engine

import (
	"sync"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// Summarising repeated proxy errors (docs/logging.md, "proxy error"): the
// first failure of a kind is logged at once; identical ones that follow
// are counted and logged as one line per summaryPeriod while they go on.
// While a web process restarts, every request fails the same way: one
// line per request drowned the log (8,787 lines in 1.7 s).
const (
	summaryPeriod = time.Second
	// maxErrorKinds bounds the distinct messages tracked at once; further
	// kinds (an application can make up error texts) share one count.
	maxErrorKinds = 32
	// maxErrorText bounds a logged message: parse errors quote what the
	// application sent.
	maxErrorText = 512
	otherErrors  = "(other proxy errors)"
)

// errorSummary turns a stream of error messages into events.
type errorSummary struct {
	message string // the event's message, "proxy error"
	log     func(message string, data ...jsconfig.Field)
	period  time.Duration

	mu   sync.Mutex
	runs map[string]*errorRun // by error text
}

// errorRun is a kind of error seen in the current period.
type errorRun struct {
	more int // identical errors after the line already logged
}

func newErrorSummary(message string, log func(string, ...jsconfig.Field)) *errorSummary {
	return &errorSummary{message: message, log: log, period: summaryPeriod, runs: map[string]*errorRun{}}
}

// add records one error; it never blocks on the log for a repeat.
func (s *errorSummary) add(text string) {
	if len(text) > maxErrorText {
		text = text[:maxErrorText] + "…"
	}
	s.mu.Lock()
	if run, ok := s.runs[text]; ok {
		run.more++
		s.mu.Unlock()
		return
	}
	key := text
	if len(s.runs) >= maxErrorKinds {
		key = otherErrors // logged as itself, repeated as "other"
		if run, ok := s.runs[key]; ok {
			run.more++
			s.mu.Unlock()
			return
		}
	}
	s.runs[key] = &errorRun{}
	s.mu.Unlock()
	s.log(s.message, jsconfig.Field{Key: "error", Value: text})
	time.AfterFunc(s.period, func() { s.flush(key) })
}

// flush ends a period of one kind: the repeats are logged as one line and
// the next period begins; a period without repeats ends the run, so the
// next error of that kind is logged at once again.
func (s *errorSummary) flush(text string) {
	s.mu.Lock()
	run := s.runs[text]
	if run.more == 0 {
		delete(s.runs, text)
		s.mu.Unlock()
		return
	}
	more := run.more
	run.more = 0
	s.mu.Unlock()
	s.log(s.message,
		jsconfig.Field{Key: "error", Value: text},
		jsconfig.Field{Key: "more", Value: more},
		jsconfig.Field{Key: "periodMs", Value: s.period.Milliseconds()})
	time.AfterFunc(s.period, func() { s.flush(text) })
}
