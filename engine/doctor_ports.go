package engine

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// The kernel's files for the ports it hands out to outgoing connections
// and the ports it keeps out of that range.
const (
	ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"
	reservedPortsFile  = "/proc/sys/net/ipv4/ip_local_reserved_ports"
)

// portSpan is an inclusive range of ports.
type portSpan struct{ lo, hi int }

func (s portSpan) String() string {
	if s.lo == s.hi {
		return strconv.Itoa(s.lo)
	}
	return strconv.Itoa(s.lo) + "-" + strconv.Itoa(s.hi)
}

// ephemeralPortsCheck warns when a port the config binds (proxy.port, a
// process's port range) lies in the kernel's ephemeral range and is not
// reserved: any outgoing connection on the host (to a database, an API)
// may be given that port as its local port, and a deploy then finds it
// busy. It returns nil when nothing overlaps or the kernel's range cannot
// be read (not Linux), so doctor's output stays what it was.
func ephemeralPortsCheck(plan *jsconfig.Plan, rangeFile, reservedFile string) *Check {
	ephemeral, ok := readEphemeralRange(rangeFile)
	if !ok {
		return nil
	}
	reserved := readReservedPorts(reservedFile)
	type source struct {
		name string
		span portSpan
	}
	var sources []source
	if plan.Proxy.Port > 0 {
		sources = append(sources, source{"proxy.port", portSpan{plan.Proxy.Port, plan.Proxy.Port}})
	}
	for _, p := range plan.Processes {
		if p.Port != nil && p.Port.From > 0 && p.Port.Last() >= p.Port.From {
			sources = append(sources, source{p.ID + " port", portSpan{p.Port.From, p.Port.Last()}})
		}
	}
	var found, toReserve []string
	for _, s := range sources {
		lo, hi := max(s.span.lo, ephemeral.lo), min(s.span.hi, ephemeral.hi)
		if lo > hi {
			continue
		}
		free := subtractSpans(portSpan{lo, hi}, reserved)
		if len(free) == 0 {
			continue
		}
		texts := make([]string, len(free))
		for i, f := range free {
			texts[i] = f.String()
		}
		found = append(found, s.name+" "+strings.Join(texts, ","))
		toReserve = append(toReserve, texts...)
	}
	if len(found) == 0 {
		return nil
	}
	return &Check{Name: "ephemeral ports", OK: true, Warning: true, Detail: fmt.Sprintf(
		"%s %s in the kernel's ephemeral port range %s (net.ipv4.ip_local_port_range): outgoing connections can take these ports, and a deploy then finds them busy; move the ports out of that range, or reserve them: sysctl -w net.ipv4.ip_local_reserved_ports=%s (keep ports already listed there; persist it in /etc/sysctl.d/)",
		strings.Join(found, ", "), plural(len(found), "is", "are"), ephemeral, strings.Join(toReserve, ","))}
}

// readEphemeralRange parses "32768\t60999".
func readEphemeralRange(path string) (portSpan, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return portSpan{}, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return portSpan{}, false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo < 1 || hi < lo {
		return portSpan{}, false
	}
	return portSpan{lo, hi}, true
}

// readReservedPorts parses "8080,9148-9150"; an unreadable file reserves
// nothing.
func readReservedPorts(path string) []portSpan {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []portSpan
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil || z < a {
				continue
			}
		}
		out = append(out, portSpan{a, z})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lo < out[j].lo })
	return out
}

// subtractSpans is s without the (sorted) reserved spans.
func subtractSpans(s portSpan, reserved []portSpan) []portSpan {
	var out []portSpan
	next := s.lo
	for _, r := range reserved {
		if r.hi < next || r.lo > s.hi {
			continue
		}
		if r.lo > next {
			out = append(out, portSpan{next, r.lo - 1})
		}
		next = r.hi + 1
		if next > s.hi {
			return out
		}
	}
	return append(out, portSpan{next, s.hi})
}
