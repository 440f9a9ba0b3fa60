package runtime

import (
	"errors"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// BindResult is the outcome of probing one port.
type BindResult int

// Bind probe outcomes.
const (
	BindFree        BindResult = iota // a listener could be bound
	BindInUse                         // EADDRINUSE
	BindUnavailable                   // any other error (EACCES, EADDRNOTAVAIL, …)
)

// ProbeBind tells whether a TCP listener can be bound on host:port right
// now. The listener is closed at once; Go sets SO_REUSEADDR, so a port in
// TIME_WAIT counts as free, as it does for the reference. For an
// unavailable port, code is the errno name (e.g. "EACCES").
func ProbeBind(host string, port int) (result BindResult, code string) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err == nil {
		ln.Close()
		return BindFree, ""
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return BindInUse, "EADDRINUSE"
	}
	return BindUnavailable, errnoName(err)
}

// EphemeralPort binds port 0 on host and returns the port the kernel
// chose, closing the listener again.
func EphemeralPort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, &PortError{Code: errnoName(err), Err: err}
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// PortError carries the errno name of a failed bind.
type PortError struct {
	Code string
	Err  error
}

func (e *PortError) Error() string { return e.Err.Error() }

func (e *PortError) Unwrap() error { return e.Err }

// errnoName is the errno's name ("EACCES"), or "UNKNOWN" for a non-OS error
// such as a host name that does not resolve.
func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "ENOTFOUND"
	}
	return "UNKNOWN"
}
