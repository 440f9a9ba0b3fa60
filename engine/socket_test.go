package engine

import (
	"strconv"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// control.owner widens whom the client trusts; a name that does not
// resolve adds nobody.
func TestControlEndpoint(t *testing.T) {
	for _, tc := range []struct {
		owner *jsconfig.IDOrName
		want  int
	}{
		{nil, 0},
		{&jsconfig.IDOrName{ID: 1234}, 1234},
		{&jsconfig.IDOrName{Name: "1234"}, 1234},
		{&jsconfig.IDOrName{Name: "root"}, 0},
		{&jsconfig.IDOrName{Name: "no-such-user-" + strconv.FormatInt(time.Now().UnixNano(), 36)}, 0},
	} {
		ep := ControlEndpoint(jsconfig.Control{Path: "/run/app.sock", Owner: tc.owner})
		if ep.Path != "/run/app.sock" || ep.Owner != tc.want {
			t.Errorf("%+v: %+v", tc.owner, ep)
		}
	}
}
