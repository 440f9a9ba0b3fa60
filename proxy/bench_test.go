package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// cannedUpstream answers every request on a keep-alive connection with a
// fixed response, allocating next to nothing itself, so what a benchmark
// measures is the proxy.
func cannedUpstream(b *testing.B) (host string, port int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return "127.0.0.1", a.Port
}

// nullWriter is a minimal ResponseWriter for in-process benchmarks.
type nullWriter struct{ h http.Header }

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nullWriter) WriteHeader(int)             {}

// benchProxy is an in-process proxy in front of cannedUpstream, and the
// request the in-process benchmarks send through it.
func benchProxy(b *testing.B) (*Proxy, *http.Request) {
	host, port := cannedUpstream(b)
	p := New(Options{})
	p.SetActive(NewTarget("v1", host, port, p))
	req, _ := http.NewRequest("GET", "http://shop.example.com/products?page=2", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("User-Agent", "bench")
	return p, req
}

// BenchmarkServeHTTP measures the proxy's request path in process: route,
// count, rewrite, pooled upstream round trip, copy back. allocs/op is the
// number to watch.
func BenchmarkServeHTTP(b *testing.B) {
	p, req := benchProxy(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &nullWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			p.ServeHTTP(w, req)
		}
	})
}

// BenchmarkOverTCP compares requests/s over real loopback connections:
// straight to the upstream, through rollbridge's proxy, and through a
// plain httputil.ReverseProxy with Go's default transport.
func BenchmarkOverTCP(b *testing.B) {
	host, port := cannedUpstream(b)
	direct := "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/"

	p := New(Options{})
	p.SetActive(NewTarget("v1", host, port, p))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(ln)
	b.Cleanup(func() { p.Shutdown(0) })

	target, _ := url.Parse(direct)
	plain := httputil.NewSingleHostReverseProxy(target)
	pln, _ := net.Listen("tcp", "127.0.0.1:0")
	psrv := &http.Server{Handler: plain}
	go psrv.Serve(pln)
	b.Cleanup(func() { psrv.Close() })

	for _, c := range []struct{ name, url string }{
		{"direct", direct},
		{"rollbridge", "http://" + ln.Addr().String() + "/"},
		{"httputil-default", "http://" + pln.Addr().String() + "/"},
	} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(c.url)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatal(resp.Status)
					}
				}
			})
		})
	}
}

// BenchmarkHeldThenReleased measures a request that is held and then
// released, in batches of 100: the hold queue, the verdict and the
// hand-off in arrival order, on top of BenchmarkServeHTTP's path.
func BenchmarkHeldThenReleased(b *testing.B) {
	p, req := benchProxy(b)
	const batch = 100
	b.ReportAllocs()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		p.Hold()
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.ServeHTTP(&nullWriter{h: http.Header{}}, req)
			}()
		}
		for held, _ := p.Held(); held < n; held, _ = p.Held() {
			runtime.Gosched()
		}
		p.Release()
		wg.Wait()
	}
}
