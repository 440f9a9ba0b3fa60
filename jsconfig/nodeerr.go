package jsconfig

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// libuv's descriptions for the errors a config load commonly meets; the
// Node.js rollbridge prints these, and scripts grep them.
var uvDescriptions = map[syscall.Errno]string{
	syscall.ENOENT:       "no such file or directory",
	syscall.EACCES:       "permission denied",
	syscall.EISDIR:       "illegal operation on a directory",
	syscall.ENOTDIR:      "not a directory",
	syscall.EEXIST:       "file already exists",
	syscall.ELOOP:        "too many symbolic links encountered",
	syscall.ENAMETOOLONG: "name too long",
	syscall.EPERM:        "operation not permitted",
	syscall.EMFILE:       "too many open files",
	syscall.EIO:          "i/o error",
}

// nodeError is an OS error in Node's shape: "CODE: description, syscall 'path'".
type nodeError struct {
	Errno   syscall.Errno
	Syscall string
	Path    string // "" when Node omits it (a failed read)
}

func (e *nodeError) Code() string { return unix.ErrnoName(e.Errno) }

func (e *nodeError) Error() string {
	desc, ok := uvDescriptions[e.Errno]
	if !ok {
		desc = e.Errno.Error()
	}
	msg := e.Code() + ": " + desc + ", " + e.Syscall
	if e.Path != "" {
		msg += " '" + e.Path + "'"
	}
	return msg
}

// toNodeError converts an error from the os package; the path reported is
// the one given, not Go's.
func toNodeError(err error, syscallName, path string) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	return &nodeError{Errno: errno, Syscall: syscallName, Path: path}
}

// NodeError renders an OS error in Node's words for the given system call
// and path, e.g. "EACCES: permission denied, open '/run/app/state.json'".
// Errors without an errno are returned unchanged.
func NodeError(err error, syscallName, path string) error {
	return toNodeError(err, syscallName, path)
}

// readFileNode reads a file the way fs.readFile reports failures: open
// errors name the path, a directory fails at read time without one.
func readFileNode(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, toNodeError(err, "open", path)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, toNodeError(err, "read", "")
	}
	return data, nil
}
