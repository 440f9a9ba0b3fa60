// Command demo is the app of `make demo`. "demo serve" (the default) is a
// web app on 127.0.0.1:$ROLLBRIDGE_PORT that names its release; "demo
// load" sends requests through the proxy until told to stop and prints one
// line: how many, how many failed, which release answered; "demo
// proxy-url" reads `rollbridge status` and prints the proxy's URL.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	mode := "serve"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "serve":
		serve()
	case "load":
		if len(os.Args) != 5 {
			fail("usage: demo load <url> <stop-file> <what the requests went through>")
		}
		load(os.Args[2], os.Args[3], os.Args[4])
	case "proxy-url":
		proxyURL()
	default:
		fail("unknown mode " + mode)
	}
}

func serve() {
	release := os.Getenv("ROLLBRIDGE_RELEASE_ID")
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // a little work, so requests overlap the switch
		fmt.Fprintf(w, "%s\n", release)
	})
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("ROLLBRIDGE_PORT")))
	if err != nil {
		fail(err.Error())
	}
	srv := &http.Server{Handler: mux}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		srv.Close()
	}()
	fmt.Printf("demo app of release %s listening on %s\n", release, ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fail(err.Error())
	}
}

// load keeps 8 clients busy (half with keep-alive, half opening a new
// connection per request) until stopFile exists, then prints
// "5,022 requests during <during>, 0 failed; v1 answered 2,480, v2 2,542".
func load(url, stopFile, during string) {
	var ok, failed atomic.Int64
	var mu sync.Mutex
	byRelease := map[string]int64{}
	var firstErr string
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: i%2 == 1}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := os.Stat(stopFile); err == nil {
					return
				}
				resp, err := client.Get(url)
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				mu.Lock()
				if err != nil {
					failed.Add(1)
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					ok.Add(1)
					byRelease[strings.TrimSpace(string(body))]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Println(loadSummary(ok.Load()+failed.Load(), failed.Load(), during, byRelease))
	if failed.Load() > 0 {
		fmt.Printf("first failure: %s\n", firstErr)
		os.Exit(1)
	}
}

// loadSummary is the demo's last line, with the releases in order:
// "…; v1 answered 2,480, v2 2,542".
func loadSummary(total, failed int64, during string, byRelease map[string]int64) string {
	line := fmt.Sprintf("%s requests during %s, %s failed", thousands(total), during, thousands(failed))
	releases := make([]string, 0, len(byRelease))
	for r := range byRelease {
		releases = append(releases, r)
	}
	sort.Strings(releases)
	for i, r := range releases {
		sep, verb := ", ", ""
		if i == 0 {
			sep, verb = "; ", "answered "
		}
		line += sep + r + " " + verb + thousands(byRelease[r])
	}
	return line
}

// thousands writes n with a comma between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func proxyURL() {
	var s struct {
		Proxy struct {
			Host string
			Port int
		}
	}
	if err := json.NewDecoder(os.Stdin).Decode(&s); err != nil {
		fail("reading rollbridge status: " + err.Error())
	}
	fmt.Printf("http://%s/\n", net.JoinHostPort(s.Proxy.Host, fmt.Sprint(s.Proxy.Port)))
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "demo:", msg)
	os.Exit(1)
}
