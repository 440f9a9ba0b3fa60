package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge/jsconfig"
)

func TestEphemeralPortsCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rangeFile := write("range", "32768\t60999\n")
	noReserved := write("reserved-none", "\n")
	plan := func(proxyPort int, ports ...*jsconfig.PortRange) *jsconfig.Plan {
		p := &jsconfig.Plan{Proxy: jsconfig.Proxy{Port: proxyPort}}
		for i, r := range ports {
			p.Processes = append(p.Processes, jsconfig.Process{ID: []string{"web", "beacon"}[i], Port: r})
		}
		return p
	}
	for _, tc := range []struct {
		name      string
		plan      *jsconfig.Plan
		rangeFile string
		reserved  string
		want      string // "" for no check
	}{
		{"below the range", plan(8182, &jsconfig.PortRange{From: 18000, To: 18099}), rangeFile, noReserved, ""},
		{"proxy port inside", plan(40000, &jsconfig.PortRange{From: 18000, To: 18099}), rangeFile, noReserved,
			"proxy.port 40000 is in the kernel's ephemeral port range 32768-60999 (net.ipv4.ip_local_port_range): outgoing connections can take these ports, and a deploy then finds them busy; move the ports out of that range, or reserve them: sysctl -w net.ipv4.ip_local_reserved_ports=40000 (keep ports already listed there; persist it in /etc/sysctl.d/)"},
		{"range straddles the start", plan(8182, &jsconfig.PortRange{From: 32700, To: 32799}, &jsconfig.PortRange{From: 61000, To: 61000}), rangeFile, noReserved,
			"web port 32768-32799 is in the kernel's ephemeral port range 32768-60999"},
		{"two sources, one partly reserved", plan(60999, &jsconfig.PortRange{From: 40000, To: 40099}), rangeFile, write("reserved-part", "8080,40010-40089,60999\n"),
			"web port 40000-40009,40090-40099 is in the kernel's ephemeral port range 32768-60999 (net.ipv4.ip_local_port_range): outgoing connections can take these ports, and a deploy then finds them busy; move the ports out of that range, or reserve them: sysctl -w net.ipv4.ip_local_reserved_ports=40000-40009,40090-40099 "},
		{"both sources", plan(40000, &jsconfig.PortRange{From: 45000, To: 45000}), rangeFile, noReserved,
			"proxy.port 40000, web port 45000 are in the kernel's ephemeral port range"},
		{"fully reserved", plan(8182, &jsconfig.PortRange{From: 40000, To: 40099}), rangeFile, write("reserved-all", "39000-41000"), ""},
		{"range to above 65535", plan(8182, &jsconfig.PortRange{From: 60990, To: 70000}), rangeFile, noReserved,
			"web port 60990-60999 is in"},
		{"no kernel file", plan(40000), filepath.Join(dir, "missing"), noReserved, ""},
		{"unreadable range", plan(40000), write("garbage", "nope"), noReserved, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ephemeralPortsCheck(tc.plan, tc.rangeFile, tc.reserved)
			if tc.want == "" {
				if c != nil {
					t.Fatalf("unexpected check %+v", *c)
				}
				return
			}
			if c == nil {
				t.Fatalf("no check, want %q", tc.want)
			}
			if c.Name != "ephemeral ports" || !c.OK || !c.Warning || !strings.HasPrefix(c.Detail, tc.want) {
				t.Fatalf("got %+v\nwant detail starting %q", *c, tc.want)
			}
		})
	}
}
