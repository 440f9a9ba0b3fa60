package control

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge/jsconfig"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct{ line, command, err string }{
		{`{"command":"status"}`, "status", ""},
		{` {"command":"status","extra":1} ` + "\r", "status", ""},
		{"this is not json", "", `Unexpected token 'h', "this is not json" is not valid JSON`},
		{"", "", "Unexpected end of JSON input"},
		{"   ", "", "Unexpected end of JSON input"},
		{"123", "", "Control command must be an object"},
		{"null", "", "Control command must be an object"},
		{`"status"`, "", "Control command must be an object"},
		{"[]", "", "Unknown command: undefined"},
		{"{}", "", "Unknown command: undefined"},
		{`{"command":null}`, "", "Unknown command: null"},
		{`{"command":5}`, "", "Unknown command: 5"},
		{`{"command":1e21}`, "", "Unknown command: 1e+21"},
		{`{"command":true}`, "", "Unknown command: true"},
		{`{"command":{}}`, "", "Unknown command: [object Object]"},
		{`{"command":[1,null,"a"]}`, "", "Unknown command: 1,,a"},
		{`{"command":"x"} trailing`, "", "Invalid JSON: unexpected data after the JSON value"},
		{`{"command":`, "", "Invalid JSON: unexpected EOF"},
	} {
		req, err := ParseRequest([]byte(tc.line))
		switch {
		case tc.err != "":
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: got %v, want %q", tc.line, err, tc.err)
			}
		case err != nil || req.Command != tc.command:
			t.Errorf("%q: got %+v %v", tc.line, req, err)
		}
	}
}

func TestRequestFields(t *testing.T) {
	req, err := ParseRequest([]byte(`{"command":"deploy","releasePath":"/srv/r1","releaseId":null,"revision":"","bad":7,"limit":2.5,"nolimit":"3"}`))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := req.RequiredString("releasePath"); v != "/srv/r1" || err != nil {
		t.Fatal(v, err)
	}
	if _, set, err := req.OptionalString("releaseId"); set || err != nil {
		t.Fatal("null is unset")
	}
	if v, set, err := req.OptionalString("revision"); !set || v != "" || err != nil {
		t.Fatal(`"" is a value`)
	}
	if _, _, err := req.OptionalString("bad"); !errors.Is(err, ErrExpectedString) {
		t.Fatal(err)
	}
	for _, f := range []string{"revision", "bad", "missing"} {
		if _, err := req.RequiredString(f); err == nil || err.Error() != f+" is required" {
			t.Errorf("%s: %v", f, err)
		}
	}
	if n, ok := req.Number("limit"); !ok || n != 2.5 {
		t.Fatal(n, ok)
	}
	if _, ok := req.Number("nolimit"); ok {
		t.Fatal("a string is not a limit")
	}
}

func TestEnvelopes(t *testing.T) {
	if got := string(Success([]byte(`{"activeReleaseId":"v1"}`))); got != `{"status":"success","activeReleaseId":"v1"}` {
		t.Fatal(got)
	}
	if got := string(Success([]byte(`{}`))); got != `{"status":"success"}` {
		t.Fatal(got)
	}
	if got := string(Failure(`bad <thing> & "quotes"`)); got != `{"error":"bad <thing> & \"quotes\"","status":"error"}` {
		t.Fatal(got)
	}
	got := string(SortedRequest("restart", jsconfig.Field{Key: "processId", Value: "w"}, jsconfig.Field{Key: "policy", Value: "service"}))
	if got != `{"command":"restart","policy":"service","processId":"w"}` {
		t.Fatal(got)
	}
}

func TestReadLineLimit(t *testing.T) {
	long := strings.Repeat("x", MaxRequestBytes+1) + "\n"
	if _, err := readLine(bufio.NewReaderSize(strings.NewReader(long), 4096)); !errors.Is(err, errLineTooLong) {
		t.Fatalf("over the limit: %v", err)
	}
	exact := strings.Repeat("y", MaxRequestBytes) + "\n"
	if line, err := readLine(bufio.NewReaderSize(strings.NewReader(exact), 4096)); err != nil || len(line) != MaxRequestBytes {
		t.Fatalf("at the limit: %d %v", len(line), err)
	}
}

// The client's failure texts (docs/cli.md#talking-to-the-daemon).
func TestClientErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.sock")
	if _, err := Call(Endpoint{Path: missing}, []byte(`{"command":"status"}`), time.Second); err == nil || err.Error() != "connect ENOENT "+missing || !NoDaemon(err) {
		t.Fatalf("no socket: %v", err)
	}
	serve := func(name string, answer func(net.Conn)) string {
		path := filepath.Join(dir, name)
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go answer(c)
			}
		}()
		return path
	}
	read := func(c net.Conn) { bufio.NewReader(c).ReadString('\n') }
	closes := serve("closes.sock", func(c net.Conn) { read(c); c.Close() })
	if _, err := Call(Endpoint{Path: closes}, []byte(`{}`), time.Second); err == nil || err.Error() != "Rollbridge daemon at "+closes+" closed the connection without a response" {
		t.Fatalf("closed: %v", err)
	}
	garbage := serve("garbage.sock", func(c net.Conn) { read(c); c.Write([]byte("hello there\n")) })
	if _, err := Call(Endpoint{Path: garbage}, []byte(`{}`), time.Second); err == nil || !strings.HasPrefix(err.Error(), "Invalid response from Rollbridge daemon at "+garbage+": ") {
		t.Fatalf("garbage: %v", err)
	}
	silent := serve("silent.sock", func(c net.Conn) { read(c); time.Sleep(time.Hour) })
	if _, err := Call(Endpoint{Path: silent}, []byte(`{}`), 200*time.Millisecond); err == nil || err.Error() != "Timed out waiting for a response from "+silent {
		t.Fatalf("silent: %v", err)
	}
	failing := serve("failing.sock", func(c net.Conn) { read(c); c.Write([]byte(`{"status":"error"}` + "\n")) })
	if _, err := Call(Endpoint{Path: failing}, []byte(`{}`), time.Second); err == nil || err.Error() != "Unknown Rollbridge error" {
		t.Fatalf("error without message: %v", err)
	}
	// A file that is not a socket refuses the connection.
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, nil, 0o644)
	if _, err := Call(Endpoint{Path: plain}, []byte(`{}`), time.Second); err == nil || err.Error() != "connect ECONNREFUSED "+plain {
		t.Fatalf("plain file: %v", err)
	}
	// The probe: a silent peer is alive but not rollbridge.
	res, err := Probe(Endpoint{Path: silent})
	if err != nil || !res.Alive || res.Rollbridge {
		t.Fatalf("probe of a silent peer: %+v %v", res, err)
	}
	if res, err := Probe(Endpoint{Path: missing}); err != nil || res.Alive {
		t.Fatalf("probe of nothing: %+v %v", res, err)
	}
}
