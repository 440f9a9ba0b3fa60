package jsconfig

import (
	"errors"
	"strings"

	"github.com/hashicorp/go-multierror"
)

// Issue is one validation problem: what is wrong and how to fix it.
type Issue struct {
	Message string
	Fix     string
}

func (i *Issue) Error() string { return i.Message }

// LoadFix is the fix shown for any failure to read or evaluate the module.
const LoadFix = "Ensure the file exists and exports a default Rollbridge config object."

// ValidationError carries every issue of an invalid config, in the order of
// docs/config.md#61-how-issues-are-reported. Its message is the aggregate the
// strict commands print.
type ValidationError struct {
	Issues []Issue
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("Invalid Rollbridge config:")
	for _, is := range e.Issues {
		b.WriteString("\n  - ")
		b.WriteString(is.Message)
	}
	return b.String()
}

// issueList collects issues in order with go-multierror.
type issueList struct {
	errs *multierror.Error
}

func (l *issueList) add(message, fix string) {
	l.errs = multierror.Append(l.errs, &Issue{Message: message, Fix: fix})
}

func (l *issueList) list() []Issue {
	if l.errs == nil {
		return nil
	}
	out := make([]Issue, 0, len(l.errs.Errors))
	for _, err := range l.errs.Errors {
		var is *Issue
		if errors.As(err, &is) {
			out = append(out, *is)
		}
	}
	return out
}
