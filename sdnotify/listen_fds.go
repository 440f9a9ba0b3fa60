package sdnotify

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// listenFDsStart is the first passed descriptor (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// listenEnv are the variables a service manager sets for the descriptors it
// passes; LISTEN_PIDFDID is set by newer systemd next to LISTEN_PID.
var listenEnv = []string{"LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES"}

// Listen takes the descriptors the service manager passed to this process,
// as sd_listen_fds_with_names(3) does with unset_environment set:
//
//   - nothing (nil, nil) unless $LISTEN_PID is this process's pid: the
//     variables were meant for another process (a parent that exec'd us
//     without clearing them);
//   - $LISTEN_FDS descriptors starting at fd 3, each marked close-on-exec
//     so the processes we start never inherit them;
//   - named by $LISTEN_FDNAMES (":"-separated, in descriptor order), each
//     "unknown" when the variable is absent; a name count that differs from
//     $LISTEN_FDS is an error, as in systemd;
//   - $LISTEN_PID, $LISTEN_PIDFDID, $LISTEN_FDS and $LISTEN_FDNAMES are
//     unset before returning, whatever the outcome, so children never see
//     them and a second call returns nothing.
//
// The map holds each name's files in descriptor order (several stored
// files may share a name). The caller owns the files: a socket is turned
// into a listener with net.FileListener (which duplicates it) and the file
// closed; a file nobody wants should be closed. On error no file is
// returned and the descriptors stay open, marked close-on-exec, as with
// sd_listen_fds.
func Listen() (map[string][]*os.File, error) {
	defer func() {
		for _, k := range listenEnv {
			os.Unsetenv(k)
		}
	}()
	pidText, ok := os.LookupEnv("LISTEN_PID")
	if !ok {
		return nil, nil
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("sdnotify: LISTEN_PID=%q is not a process id", pidText)
	}
	if pid != os.Getpid() {
		return nil, nil
	}
	countText, ok := os.LookupEnv("LISTEN_FDS")
	if !ok {
		return nil, nil
	}
	n, err := strconv.Atoi(countText)
	if err != nil || n <= 0 || n > 1<<20 {
		return nil, fmt.Errorf("sdnotify: LISTEN_FDS=%q is not a positive descriptor count", countText)
	}
	for fd := listenFDsStart; fd < listenFDsStart+n; fd++ {
		if err := setCloseOnExec(fd); err != nil {
			return nil, fmt.Errorf("sdnotify: LISTEN_FDS=%d: descriptor %d: %w", n, fd, err)
		}
	}
	names := make([]string, n)
	if list, ok := os.LookupEnv("LISTEN_FDNAMES"); ok {
		got := strings.Split(list, ":")
		if len(got) != n {
			return nil, fmt.Errorf("sdnotify: LISTEN_FDNAMES names %d descriptors, LISTEN_FDS passes %d", len(got), n)
		}
		copy(names, got)
	} else {
		for i := range names {
			names[i] = "unknown"
		}
	}
	files := make(map[string][]*os.File, n)
	for i, name := range names {
		files[name] = append(files[name], os.NewFile(uintptr(listenFDsStart+i), name))
	}
	return files, nil
}

// setCloseOnExec sets FD_CLOEXEC on fd, failing (EBADF) when fd is not open.
func setCloseOnExec(fd int) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		return err
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC)
	return err
}
