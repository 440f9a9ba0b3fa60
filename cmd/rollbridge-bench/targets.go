package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// groupCPU is the CPU time (user + system) used so far by the processes
// of process group pgid.
func groupCPU(pgid int) time.Duration {
	entries, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// rssBytes is the resident set size of one process.
func rssBytes(pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// freePort asks the kernel for a free loopback port.
func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitHTTP polls url until it answers 2xx.
func waitHTTP(url string, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within %v", url, limit)
}

// startGroup starts a command in its own process group.
func startGroup(name string, env []string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = nil, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// stopGroup ends a process group this program started and reaps it.
func stopGroup(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// daemon is a rollbridge daemon on loopback with the bench app.
type daemon struct {
	bin, dir, config, sock string
	cmd                    *exec.Cmd
	log                    *syncWriter
	port                   int // the proxy's
}

// daemonConfig is the bench app as the proxied process of a release.
func daemonConfig(dir, self string, extra string) string {
	return fmt.Sprintf(`export default {
  application: "bench",
  control: {path: %q},
  proxy: {port: 0, drainTimeoutMs: 5000},
  processes: [
    {id: "web", policy: "proxied", command: %q, port: {from: 41000, to: 41999}, health: {intervalMs: 5}%s}
  ]
};
`, filepath.Join(dir, "rb.sock"), "exec "+self+" app", extra)
}

// newDaemon writes a config and starts `rollbridge daemon` on it.
func newDaemon(bin, dir string, args ...string) (*daemon, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	d := &daemon{bin: bin, dir: dir, config: filepath.Join(dir, "rollbridge.js"), sock: filepath.Join(dir, "rb.sock"), log: &syncWriter{}}
	if _, err := os.Stat(d.config); err != nil {
		if err := os.WriteFile(d.config, []byte(daemonConfig(dir, self, "")), 0o644); err != nil {
			return nil, err
		}
	}
	return d, d.start(args...)
}

func (d *daemon) start(args ...string) error {
	cmd := exec.Command(d.bin, append([]string{"daemon", "-c", d.config}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = d.log, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	d.cmd = cmd
	return nil
}

// waitReady waits until the daemon answers status, and learns its port.
func (d *daemon) waitReady() error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if out, err := d.cli("status"); err == nil {
			var s struct{ Proxy struct{ Port int } }
			json.Unmarshal(out, &s)
			d.port = s.Proxy.Port
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("the daemon did not answer")
}

func (d *daemon) cli(args ...string) ([]byte, error) {
	full := append([]string{args[0], "-c", d.config}, args[1:]...)
	cmd := exec.Command(d.bin, full...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("rollbridge %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.Bytes(), nil
}

// deploy deploys release id, with extra options for the deploy command,
// and returns the CLI's wall time.
func (d *daemon) deploy(id string, extra ...string) (time.Duration, error) {
	rel := filepath.Join(d.dir, "releases", id)
	if err := os.MkdirAll(rel, 0o755); err != nil {
		return 0, err
	}
	t0 := time.Now()
	_, err := d.cli(append([]string{"deploy", "--release-path", rel, "--release-id", id}, extra...)...)
	return time.Since(t0), err
}

// appPort is the active release's web port.
func (d *daemon) appPort() (int, error) {
	out, err := d.cli("status")
	if err != nil {
		return 0, err
	}
	var s struct {
		ActiveReleaseID string `json:"activeReleaseId"`
		Releases        []struct {
			ReleaseID string         `json:"releaseId"`
			Ports     map[string]int `json:"ports"`
		} `json:"releases"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		return 0, err
	}
	for _, r := range s.Releases {
		if r.ReleaseID == s.ActiveReleaseID {
			return r.Ports["web"], nil
		}
	}
	return 0, errors.New("no active release")
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// shutdown stops the daemon through its control socket and waits.
func (d *daemon) shutdown() {
	if d.cmd == nil {
		return
	}
	d.cli("shutdown")
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	d.cmd = nil
}

// nginx is nginx proxying to the app with upstream keep-alive, one worker.
type nginx struct {
	cmd  *exec.Cmd
	port int
}

func findNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func startNginx(bin, dir string, appPort int) (*nginx, error) {
	port := freePort()
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)
	conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream app { server 127.0.0.1:%[2]d; keepalive 64; }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
    }
  }
}
`, dir, appPort, port)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd, err := startGroup(bin, nil, "-p", dir, "-c", path, "-g", "daemon off;")
	if err != nil {
		return nil, err
	}
	n := &nginx{cmd: cmd, port: port}
	if err := waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/ping", port), 10*time.Second); err != nil {
		stopGroup(cmd)
		return nil, fmt.Errorf("nginx: %v", err)
	}
	return n, nil
}

// syncWriter collects a daemon's log for reading while it is written.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
