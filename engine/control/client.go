package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ConnectTimeout bounds connecting to the control socket
// (docs/cli.md#talking-to-the-daemon).
const ConnectTimeout = 5 * time.Second

// ReadTimeout bounds waiting for the answer of a read-only command.
const ReadTimeout = 30 * time.Second

// Call sends one request to the daemon at ep and returns the raw
// response line of a success. readTimeout 0 waits as long as the command
// runs (deploys, stops). Errors carry the CLI's texts: connect <ERRNO>
// <path>, a closed connection, an invalid or error response, or the
// refusal of an untrusted socket (see Endpoint).
func Call(ep Endpoint, request []byte, readTimeout time.Duration) ([]byte, error) {
	ctx := context.Background()
	if readTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readTimeout)
		defer cancel()
	}
	return CallContext(ctx, ep, request)
}

// CallContext is Call with the wait for the answer bounded by ctx
// instead of a read timeout: when ctx ends first, the connection is
// closed and the error is a *TimeoutError. The connect timeout applies
// as for Call.
func CallContext(ctx context.Context, ep Endpoint, request []byte) ([]byte, error) {
	path := ep.Path
	conn, err := Dial(ep)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(append(append([]byte(nil), request...), '\n')); err != nil {
		return nil, fmt.Errorf("Rollbridge daemon at %s closed the connection without a response", path)
	}
	return ReadResponse(bufio.NewReader(conn), path)
}

// CallWithFiles is Call for a request whose reply may carry files
// (SCM_RIGHTS), as retire-owner's reply to a handoff does. It waits as
// long as the daemon takes. The caller owns the files returned, also
// along with an error.
func CallWithFiles(ep Endpoint, request []byte) ([]byte, []*os.File, error) {
	path := ep.Path
	conn, err := Dial(ep)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("%s is not a Unix socket", path)
	}
	if _, err := conn.Write(append(append([]byte(nil), request...), '\n')); err != nil {
		return nil, nil, fmt.Errorf("Rollbridge daemon at %s closed the connection without a response", path)
	}
	var data []byte
	var files []*os.File
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(8*4))
	for bytes.IndexByte(data, '\n') < 0 {
		n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
		files = append(files, receivedFiles(oob[:oobn])...)
		data = append(data, buf[:n]...)
		if err != nil || n == 0 {
			break
		}
	}
	line, err := ReadResponse(bufio.NewReader(bytes.NewReader(data)), path)
	return line, files, err
}

// receivedFiles turns SCM_RIGHTS ancillary data into files.
func receivedFiles(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files
}

// Dial connects to the control socket with the connect timeout, once the
// socket file and the listening process have passed ep's trust check.
func Dial(ep Endpoint) (net.Conn, error) {
	return dial(ep, ConnectTimeout)
}

// ConnectError formats a failed connect as "connect <ERRNO> <path>".
func ConnectError(err error, path string) error {
	var errno syscall.Errno
	code := "ECONNREFUSED"
	switch {
	case errors.As(err, &errno):
		code = unix.ErrnoName(errno)
	case errors.Is(err, os.ErrDeadlineExceeded):
		code = "ETIMEDOUT"
	}
	return &DialError{Code: code, Path: path}
}

// DialError is a failed connection to the control socket.
type DialError struct {
	Code string // ENOENT, ECONNREFUSED, EACCES, …
	Path string
}

func (e *DialError) Error() string { return "connect " + e.Code + " " + e.Path }

// NoDaemon reports whether err means nothing listens at the socket.
func NoDaemon(err error) bool {
	var de *DialError
	return errors.As(err, &de) && (de.Code == "ENOENT" || de.Code == "ECONNREFUSED")
}

// ReadResponse reads and checks the first response line: it must be a
// JSON object; one with "status":"error" becomes a *DaemonError.
func ReadResponse(r *bufio.Reader, path string) ([]byte, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, &TimeoutError{Path: path}
		}
		return nil, fmt.Errorf("Rollbridge daemon at %s closed the connection without a response", path)
	}
	line = line[:len(line)-1]
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, fmt.Errorf("Invalid response from Rollbridge daemon at %s: %s", path, jsonDetail(err))
	}
	var status string
	_ = json.Unmarshal(obj["status"], &status)
	if status == "error" {
		var msg string
		_ = json.Unmarshal(obj["error"], &msg)
		if msg == "" {
			msg = "Unknown Rollbridge error"
		}
		extra := map[string]json.RawMessage{}
		for k, v := range obj {
			if k != "error" && k != "status" {
				extra[k] = v
			}
		}
		return nil, &DaemonError{Message: msg, Fields: extra}
	}
	return line, nil
}

// TimeoutError is a response that did not come within the read timeout.
type TimeoutError struct{ Path string }

func (e *TimeoutError) Error() string { return "Timed out waiting for a response from " + e.Path }

// DaemonError is an error reply of the daemon, relayed verbatim.
type DaemonError struct {
	Message string
	// Fields are the reply's other fields besides "error" and "status",
	// such as a failed deploy's "processes" (see DetailedError).
	Fields map[string]json.RawMessage
}

func (e *DaemonError) Error() string { return e.Message }

func jsonDetail(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "the response is not a JSON object"
	}
	return err.Error()
}
