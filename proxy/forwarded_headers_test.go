package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// recordingApp remembers the Host and headers of the last request it got;
// a WebSocket handshake is accepted with 101 and the connection closed.
type recordingApp struct {
	*upstream
	last chan http.Header
}

func newRecordingApp(t *testing.T) *recordingApp {
	a := &recordingApp{last: make(chan http.Header, 1)}
	a.upstream = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h["Host"] = []string{r.Host}
		a.last <- h
		if r.Header.Get("Upgrade") != "" {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			conn.Close()
			return
		}
		io.WriteString(w, "ok")
	})
	return a
}

// exchange sends a plain request or a WebSocket handshake with the given
// extra header lines and returns the headers the application saw.
func (a *recordingApp) exchange(t *testing.T, addr string, websocket bool, lines string) http.Header {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /h HTTP/1.1\r\n" + lines
	if websocket {
		req += "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
		if !strings.Contains(lines, "Connection:") {
			req += "Connection: Upgrade\r\n"
		}
	}
	io.WriteString(c, req+"\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := map[bool]int{false: 200, true: 101}[websocket]; resp.StatusCode != want {
		t.Fatalf("status %d, want %d", resp.StatusCode, want)
	}
	select {
	case h := <-a.last:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("the application saw no request")
		return nil
	}
}

// Each row of the header table in
// docs/nginx.md#3-host-and-x-forwarded--headers, for plain requests and
// WebSocket handshakes, with and without values sent by the client.
func TestForwardedHeaderTable(t *testing.T) {
	a := newRecordingApp(t)
	p, addr, _ := startProxy(t)
	p.SetActive(a.target(p, "v1"))
	const client = "Host: shop.example.com:8443\r\n" +
		"X-Forwarded-For: 203.0.113.9\r\n" +
		"X-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Port: 443\r\n" +
		"X-Forwarded-Host: edge.example\r\n" +
		"Forwarded: for=192.0.2.60;proto=https;host=evil.example\r\n"
	const bare = "Host: shop.example.com\r\n"
	absent := "(absent)"
	rows := []struct {
		header                       string
		plain, plainBare, ws, wsBare string
	}{
		{"Host", "shop.example.com:8443", "shop.example.com", "shop.example.com:8443", "shop.example.com"},
		{"X-Forwarded-For", "203.0.113.9,127.0.0.1", "127.0.0.1", "203.0.113.9,127.0.0.1", "127.0.0.1"},
		{"X-Forwarded-Proto", "https,http", "http", "https,ws", "ws"},
		{"X-Forwarded-Port", "443,8443", "80", "443,8443", "80"},
		{"X-Forwarded-Host", "edge.example", "shop.example.com", "edge.example", absent},
		{"Forwarded", absent, absent, absent, absent},
	}
	seen := map[[2]bool]http.Header{}
	for _, ws := range []bool{false, true} {
		for _, withClient := range []bool{true, false} {
			lines := bare
			if withClient {
				lines = client
			}
			seen[[2]bool{ws, withClient}] = a.exchange(t, addr, ws, lines)
		}
	}
	for _, row := range rows {
		t.Run(row.header, func(t *testing.T) {
			for _, c := range []struct {
				name           string
				ws, withClient bool
				want           string
			}{
				{"plain request, values from the client", false, true, row.plain},
				{"plain request, no values from the client", false, false, row.plainBare},
				{"WebSocket handshake, values from the client", true, true, row.ws},
				{"WebSocket handshake, no values from the client", true, false, row.wsBare},
			} {
				got := absent
				if v, ok := seen[[2]bool{c.ws, c.withClient}][row.header]; ok {
					got = strings.Join(v, " | ")
				}
				if got != c.want {
					t.Errorf("%s: the application saw %q, want %q", c.name, got, c.want)
				}
			}
		})
	}
}

// A header the client names in Connection is hop-by-hop: it is not
// forwarded, and it is not the prior value an X-Forwarded-* appends to.
func TestHeadersNamedInConnectionAreDropped(t *testing.T) {
	a := newRecordingApp(t)
	p, addr, _ := startProxy(t)
	p.SetActive(a.target(p, "v1"))
	const names = "X-Forwarded-For, x-forwarded-proto,X-Forwarded-Port , X-Forwarded-Host, X-Custom"
	const lines = "Host: shop.example.com\r\n" +
		"X-Forwarded-For: 198.51.100.1\r\n" +
		"X-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Port: 443\r\n" +
		"X-Forwarded-Host: spoofed.example\r\n" +
		"X-Custom: secret\r\n"
	for _, ws := range []bool{false, true} {
		connection := "Connection: keep-alive, " + names + "\r\n"
		want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Port": "80", "X-Forwarded-Host": "shop.example.com"}
		if ws {
			connection = "Connection: Upgrade, " + names + "\r\n"
			want["X-Forwarded-Proto"] = "ws"
			delete(want, "X-Forwarded-Host")
		}
		h := a.exchange(t, addr, ws, lines+connection)
		for _, name := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Host", "X-Custom"} {
			got, ok := h[name]
			if w, expected := want[name]; expected != ok || (ok && strings.Join(got, " | ") != w) {
				t.Errorf("websocket=%v: %s = %q, want %q (present: %v)", ws, name, got, w, expected)
			}
		}
	}
}

// A relay target passes the client's X-Forwarded-* headers on unchanged
// to a second proxy, which adds its own: the application sees what it
// would have seen had the request gone to the second proxy directly. This
// is how a retiring daemon hands its held requests to its successor,
// which holds them in turn.
func TestRelayTargetPassesForwardedHeadersThrough(t *testing.T) {
	a := newRecordingApp(t)
	successor, succAddr, _ := startProxy(t)
	successor.SetActive(a.target(successor, "v1"))
	retiring, retAddr, _ := startProxy(t)
	_, port, _ := net.SplitHostPort(succAddr)
	portN, _ := strconv.Atoi(port)
	relay := NewRelayTarget("127.0.0.1", portN, retiring)
	if relay.ID() != "relay" {
		t.Fatalf("relay target id %q", relay.ID())
	}
	retiring.SetActive(relay)

	fwd := []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Proto", "Host"}
	for _, c := range []struct {
		name      string
		websocket bool
		lines     string
	}{
		{"from nginx", false, "Host: shop.example.com\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example.com\r\nX-Forwarded-Port: 443\r\n"},
		{"bare", false, "Host: shop.example.com:8080\r\n"},
		{"WebSocket from nginx", true, "Host: shop.example.com\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nX-Forwarded-Proto: https\r\n"},
		{"named in Connection", false, "Host: x\r\nConnection: X-Forwarded-For\r\nX-Forwarded-For: 6.6.6.6\r\n"},
	} {
		direct := a.exchange(t, succAddr, c.websocket, c.lines)
		relayed := a.exchange(t, retAddr, c.websocket, c.lines)
		for _, name := range fwd {
			if d, r := strings.Join(direct[name], "|"), strings.Join(relayed[name], "|"); d != r {
				t.Errorf("%s: %s relayed %q, direct %q", c.name, name, r, d)
			}
		}
		if c.name == "from nginx" && relayed.Get("X-Forwarded-For") != "203.0.113.9,127.0.0.1" {
			t.Errorf("X-Forwarded-For %q", relayed.Get("X-Forwarded-For"))
		}
	}

	// The hand-over: requests held by the retiring proxy are released to
	// the relay while the successor holds; they reach the app when the
	// successor releases them.
	retiring.SetActive(nil)
	retiring.Hold()
	_, br := dialHeld(t, retAddr, "GET /handed HTTP/1.1\r\nHost: shop.example.com\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n")
	waitUntil(t, func() bool { return heldCount(retiring) == 1 })
	successor.Hold()
	retiring.SetActive(relay)
	if n := retiring.Release(); n != 1 {
		t.Fatalf("retiring proxy released %d", n)
	}
	waitUntil(t, func() bool { return heldCount(successor) == 1 })
	successor.Release()
	if resp, _ := readAnswer(t, br, false); resp.StatusCode != 200 {
		t.Fatalf("handed-over request: %d", resp.StatusCode)
	}
	if h := <-a.last; h.Get("X-Forwarded-For") != "203.0.113.9,127.0.0.1" {
		t.Fatalf("handed-over request seen with X-Forwarded-For %q", h.Get("X-Forwarded-For"))
	}
}
