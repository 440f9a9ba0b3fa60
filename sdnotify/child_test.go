package sdnotify_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/sdnotify"
	"golang.org/x/sys/unix"
)

// childEnv selects what the re-executed test binary does instead of
// running tests: it plays the daemon (or an app the daemon started).
const childEnv = "SDNOTIFY_TEST_CHILD"

// childVars selects mode in a re-executed test binary; without the race
// detector's one-second pause at exit, which would slow every child.
func childVars(mode string) []string {
	return []string{childEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}
}

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childEnv); mode {
	case "":
		os.Exit(m.Run())
	case "first":
		childFirst()
	case "second":
		childSecond()
	case "report":
		childReport()
	case "app":
		childApp()
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", childEnv, mode)
		os.Exit(2)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "child: "+format+"\n", args...)
	os.Exit(1)
}

// childFirst is the daemon before the crash: it binds a listener, starts
// an app writing to a pipe, stores the listener and the pipe's read end,
// and says where they are in STATUS= with READY=1. Then it waits to be
// killed.
func childFirst() {
	got, err := sdnotify.Listen()
	if err != nil || len(got) != 0 {
		fail("first start got %v, %v; want nothing", got, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		fail("listener file: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		fail("pipe: %v", err)
	}
	exe, _ := os.Executable()
	app := exec.Command(exe)
	app.Env = append(os.Environ(), childVars("app")...)
	app.Stdout = w
	app.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := app.Start(); err != nil {
		fail("start app: %v", err)
	}
	w.Close()
	if err := sdnotify.Store("proxy", lnFile); err != nil {
		fail("store proxy: %v", err)
	}
	if err := sdnotify.Store("out-app", r); err != nil {
		fail("store pipe: %v", err)
	}
	if err := sdnotify.Notify(fmt.Sprintf("READY=1\nSTATUS=%s %d", ln.Addr(), app.Process.Pid)); err != nil {
		fail("notify: %v", err)
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	<-c
	os.Exit(0)
}

// childApp writes one line and keeps its stdout open until SIGTERM, like an
// app that outlives a crashed daemon.
func childApp() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	fmt.Println("written before the restart")
	<-c
	os.Exit(0)
}

// secondReport is what the restarted daemon found, sent as JSON in STATUS=.
type secondReport struct {
	Names       []string `json:"names"`
	Env         []string `json:"env"`       // LISTEN_* variables left after Listen
	NoCloexec   []int    `json:"noCloexec"` // passed fds without FD_CLOEXEC
	Request     string   `json:"request"`
	ListenAddr  string   `json:"listenAddr"`
	PipeLine    string   `json:"pipeLine"`
	ChildSawEnv string   `json:"childSawEnv"` // LISTEN_* in a process this one starts
}

// childSecond is the daemon after the restart: it takes the stored files,
// accepts the connection queued while nobody accepted, answers it, reads
// the pipe, and reports.
func childSecond() {
	files, err := sdnotify.Listen()
	if err != nil {
		fail("listen: %v", err)
	}
	var rep secondReport
	for name, fs := range files {
		for range fs {
			rep.Names = append(rep.Names, name)
		}
	}
	sort.Strings(rep.Names)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LISTEN_") {
			rep.Env = append(rep.Env, kv)
		}
	}
	for fd := 3; fd < 3+len(rep.Names); fd++ {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
			rep.NoCloexec = append(rep.NoCloexec, fd)
		}
	}
	out, err := exec.Command("/bin/sh", "-c", `echo "${LISTEN_PID-}${LISTEN_FDS-}${LISTEN_FDNAMES-}"`).Output()
	if err != nil {
		fail("run sh: %v", err)
	}
	rep.ChildSawEnv = strings.TrimSpace(string(out))
	if len(files["proxy"]) != 1 || len(files["out-app"]) != 1 {
		fail("got names %v, want proxy and out-app", rep.Names)
	}
	ln, err := net.FileListener(files["proxy"][0])
	if err != nil {
		fail("file listener: %v", err)
	}
	files["proxy"][0].Close()
	rep.ListenAddr = ln.Addr().String()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		fail("accept: %v", err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil {
		fail("read request: %v", err)
	}
	rep.Request = string(buf)
	if _, err := fmt.Fprintf(conn, "pong %d\n", os.Getpid()); err != nil {
		fail("answer: %v", err)
	}
	conn.Close()
	pipe := files["out-app"][0]
	line := make([]byte, len("written before the restart\n"))
	if _, err := io.ReadFull(pipe, line); err != nil {
		fail("read pipe: %v", err)
	}
	rep.PipeLine = string(line)
	b, _ := json.Marshal(rep)
	if err := sdnotify.Notify("READY=1\nSTATUS=" + string(b)); err != nil {
		fail("notify: %v", err)
	}
	os.Exit(0)
}

// listenReport is what Listen returned in a "report" child.
type listenReport struct {
	Names map[string]int `json:"names"`
	Err   string         `json:"err"`
	Env   []string       `json:"env"`
}

// childReport calls Listen once and prints what it got as JSON.
func childReport() {
	files, err := sdnotify.Listen()
	rep := listenReport{Names: map[string]int{}}
	for name, fs := range files {
		rep.Names[name] = len(fs)
	}
	if err != nil {
		rep.Err = err.Error()
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LISTEN_") {
			rep.Env = append(rep.Env, kv)
		}
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}
