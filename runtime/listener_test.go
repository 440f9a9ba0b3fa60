package runtime

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestTCPListenerTable(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4650 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 00000000:4650 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:4650 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1004 1 0000000000000000 100 0 0 10 0
`
	file := filepath.Join(t.TempDir(), "tcp")
	os.WriteFile(file, []byte(table), 0o644)
	got := tcpListenerUIDs(file, 0x4650)
	if len(got) != 2 || got[0] != 0 || got[1] != 65534 {
		t.Fatalf("listeners on 18000: %v (an established connection does not count)", got)
	}
	if got := tcpListenerUIDs(file, 9); len(got) != 0 {
		t.Fatalf("port 9: %v", got)
	}
}

// A port listened on by the group's own user (or root) passes; one of
// another user does not; a dead group is not running.
func TestCheckPortOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the other listener runs as uid 65534")
	}
	group := exec.Command("sleep", "60")
	group.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := group.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { syscall.Kill(-group.Process.Pid, syscall.SIGKILL); group.Wait() }()

	own, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if err := CheckPortOwner(group.Process.Pid, own.Addr().(*net.TCPAddr).Port); err != nil {
		t.Fatalf("a root listener for a root process: %v", err)
	}

	// A listener whose socket another user created.
	other := listenAs(t, 65534)
	defer other.Close()
	err = CheckPortOwner(group.Process.Pid, other.Addr().(*net.TCPAddr).Port)
	if poe, ok := err.(*PortOwnerError); !ok || poe.UID != 65534 {
		t.Fatalf("a listener of uid 65534: %v", err)
	}

	syscall.Kill(-group.Process.Pid, syscall.SIGKILL)
	group.Wait()
	if err := CheckPortOwner(group.Process.Pid, own.Addr().(*net.TCPAddr).Port); err != ErrNotRunning {
		t.Fatalf("a dead group: %v", err)
	}
}

// listenAs returns a loopback listener whose socket was created with the
// filesystem uid set to uid (on this thread only): the kernel records
// that user as the socket's owner, as if uid had opened it.
func listenAs(t *testing.T, uid int) net.Listener {
	t.Helper()
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	prev, _ := unix.SetfsuidRetUid(uid)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	unix.Setfsuid(prev)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
