package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"time"
)

// ProbeTimeout bounds the whole control-socket probe
// (docs/cli.md#talking-to-the-daemon).
const ProbeTimeout = 1000 * time.Millisecond

// ProbeResult says what, if anything, answers on a control socket.
type ProbeResult struct {
	Alive bool // something accepted the connection
	// Rollbridge is set when the answer was a status object with a string
	// application.
	Rollbridge      bool
	Application     string
	ActiveReleaseID *string // nil when the daemon has no active release
	ProxyHost       string
	ProxyPort       float64
	HasProxy        bool
}

// Probe asks the socket at ep for its status within ProbeTimeout.
// ENOENT and ECONNREFUSED mean nothing is alive (no error), and so does
// a path that is not a socket, a symbolic link included (the caller
// decides what to make of that file; nothing is connected through a
// link). A socket that fails ep's trust check is an *OwnerError, whether
// or not anything listens; any other connect failure is returned as
// "connect <ERRNO> <path>".
func Probe(ep Endpoint) (ProbeResult, error) {
	deadline := time.Now().Add(ProbeTimeout)
	conn, err := dial(ep, ProbeTimeout)
	if err != nil {
		var link *LinkError
		if NoDaemon(err) || errors.As(err, &link) {
			return ProbeResult{}, nil
		}
		return ProbeResult{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	res := ProbeResult{Alive: true}
	if _, err := conn.Write([]byte(`{"command":"status"}` + "\n")); err != nil {
		return res, nil
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		return res, nil
	}
	var status struct {
		Application     *string `json:"application"`
		ActiveReleaseID any     `json:"activeReleaseId"`
		Proxy           *struct {
			Host any `json:"host"`
			Port any `json:"port"`
		} `json:"proxy"`
	}
	if json.Unmarshal(line, &status) != nil || status.Application == nil {
		return res, nil
	}
	res.Rollbridge = true
	res.Application = *status.Application
	if id, ok := status.ActiveReleaseID.(string); ok {
		res.ActiveReleaseID = &id
	}
	if p := status.Proxy; p != nil {
		host, hostOK := p.Host.(string)
		port, portOK := p.Port.(float64)
		if hostOK && portOK {
			res.ProxyHost, res.ProxyPort, res.HasProxy = host, port, true
		}
	}
	return res, nil
}
