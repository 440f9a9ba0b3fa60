package main

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// runApp is the backend every target proxies to: a fixed small answer on
// every path, /ping for health checks, and /ws, an upgraded connection
// that echoes lines. BENCH_BOOT_MS delays the listener, to model an app's
// own boot time.
func runApp() {
	if ms, _ := strconv.Atoi(os.Getenv("BENCH_BOOT_MS")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	release := os.Getenv("ROLLBRIDGE_RELEASE_ID")
	body := []byte("ok " + release + "\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", echoUpgrade)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	serveUntilSignalled("app", net.JoinHostPort("127.0.0.1", os.Getenv("ROLLBRIDGE_PORT")), &http.Server{Handler: mux})
}

// serveUntilSignalled serves srv on addr until SIGTERM or SIGINT.
func serveUntilSignalled(name, addr string, srv *http.Server) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fatalf("%s: %v", name, err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fatalf("%s: %v", name, err)
	}
}

// echoUpgrade answers an upgrade with 101 and echoes lines until the
// client closes: the WebSocket round trip without the framing.
func echoUpgrade(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "no upgrade", http.StatusInternalServerError)
		return
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(io.MultiReader(rw.Reader, c))
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		if _, err := c.Write(line); err != nil {
			return
		}
	}
}

// runHTTPUtil is the baseline of a stock reverse proxy: httputil's
// ReverseProxy with Go's default transport, as most Go proxies start.
func runHTTPUtil(listen, target string) {
	// Clients that hang up mid-request are part of a load run, not news.
	serveUntilSignalled("httputil", listen, &http.Server{Handler: newStockProxy(target), ErrorLog: log.New(io.Discard, "", 0)})
}
