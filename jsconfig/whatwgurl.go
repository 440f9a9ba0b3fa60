package jsconfig

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// This file is the URL parser of the WHATWG URL Standard (the one behind
// Node's URL class), so configs resolve new URL(ref, base) exactly as Node
// does. goja_nodejs' url module builds on net/url, which follows RFC 3986
// and cleans every path as if it were absolute: a relative reference lost
// its base directory ("./x.json" against file:///srv/app/c.js gave
// file:///x.json) and trailing slashes vanished. The states and their
// names follow the standard's "basic URL parser", including the state
// overrides the URL setters use.
//
// testdata/url/golden.json holds what Node prints for the cases configs
// meet; this parser matches all of them. Node 20's parser (ada 2.9)
// departs from the standard in corners no config reaches, and there this
// one follows the standard: ".." at the root of a non-special URL
// ("foo://h/.." is "foo://h/", Node says "foo://h"), a first file path
// segment that merely starts with "X:" ("file:///h:0/.." is "file:///"),
// a relative reference with '#' against an opaque base ("h#f" against
// "mailto:x" fails), and some right-to-left host names that UTS #46's
// bidi rule rejects.

// whatwgURL is a URL record.
type whatwgURL struct {
	scheme      string
	username    string
	password    string
	host        string // serialized; meaningful when hasHost
	hasHost     bool   // false: the host is null (as in "sc:x" or "sc:/x")
	port        int    // -1: none
	path        []string
	opaque      bool   // the path is one opaque string ("mailto:a@b")
	opaquePath  string // the path when opaque
	query       string
	hasQuery    bool
	fragment    string
	hasFragment bool
}

type urlState int

const (
	stateNone urlState = iota
	stateSchemeStart
	stateScheme
	stateNoScheme
	stateSpecialRelativeOrAuthority
	statePathOrAuthority
	stateRelative
	stateRelativeSlash
	stateSpecialAuthoritySlashes
	stateSpecialAuthorityIgnoreSlashes
	stateAuthority
	stateHost
	stateHostname
	statePort
	stateFile
	stateFileSlash
	stateFileHost
	statePathStart
	statePath
	stateOpaquePath
	stateQuery
	stateFragment
)

const eof = rune(-1)

func isSpecialScheme(s string) bool {
	switch s {
	case "ftp", "file", "http", "https", "ws", "wss":
		return true
	}
	return false
}

func defaultPort(scheme string) int {
	switch scheme {
	case "ftp":
		return 21
	case "http", "ws":
		return 80
	case "https", "wss":
		return 443
	}
	return -1
}

func (u *whatwgURL) special() bool { return isSpecialScheme(u.scheme) }

func (u *whatwgURL) includesCredentials() bool { return u.username != "" || u.password != "" }

func (u *whatwgURL) cannotHaveCredentialsOrPort() bool {
	return !u.hasHost || u.host == "" || u.scheme == "file"
}

// parseWHATWG parses input against an optional base; ok is false where
// Node throws "Invalid URL".
func parseWHATWG(input string, base *whatwgURL) (*whatwgURL, bool) {
	u := &whatwgURL{port: -1}
	input = strings.TrimFunc(input, func(r rune) bool { return r <= ' ' })
	if !u.parse(input, base, stateNone) {
		return nil, false
	}
	return u, true
}

func isASCIIAlpha(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
func isASCIIDigit(r rune) bool { return r >= '0' && r <= '9' }
func isASCIIHex(r rune) bool {
	return isASCIIDigit(r) || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F'
}

func toLowerASCII(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

// windowsDriveLetter: an ASCII letter then ':' or (not normalized) '|'.
func windowsDriveLetter(s []rune, normalized bool) bool {
	return len(s) == 2 && isASCIIAlpha(s[0]) && (s[1] == ':' || !normalized && s[1] == '|')
}

func startsWithWindowsDriveLetter(s []rune) bool {
	if len(s) < 2 || !windowsDriveLetter(s[:2], false) {
		return false
	}
	if len(s) == 2 {
		return true
	}
	switch s[2] {
	case '/', '\\', '?', '#':
		return true
	}
	return false
}

func isSingleDot(s string) bool { return s == "." || strings.EqualFold(s, "%2e") }

func isDoubleDot(s string) bool {
	switch strings.ToLower(s) {
	case "..", ".%2e", "%2e.", "%2e%2e":
		return true
	}
	return false
}

func (u *whatwgURL) shortenPath() {
	if u.scheme == "file" && len(u.path) == 1 && windowsDriveLetter([]rune(u.path[0]), true) {
		return
	}
	if len(u.path) > 0 {
		u.path = u.path[:len(u.path)-1]
	}
}

// parse runs the basic URL parser on input with u as the URL to fill (or
// change, with a state override); it reports false for failure.
func (u *whatwgURL) parse(input string, base *whatwgURL, override urlState) bool {
	input = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, input)
	in := []rune(input)
	state := override
	if state == stateNone {
		state = stateSchemeStart
	}
	var buf []rune
	atSignSeen, insideBrackets, passwordTokenSeen := false, false, false
	remainingStartsWith := func(p int, r rune) bool { return p+1 < len(in) && in[p+1] == r }

	for p := 0; ; p++ {
		c := eof
		if p >= 0 && p < len(in) {
			c = in[p]
		}
		switch state {
		case stateSchemeStart:
			switch {
			case isASCIIAlpha(c):
				buf = append(buf, toLowerASCII(c))
				state = stateScheme
			case override == stateNone:
				state = stateNoScheme
				p--
			default:
				return false
			}

		case stateScheme:
			switch {
			case isASCIIAlpha(c) || isASCIIDigit(c) || c == '+' || c == '-' || c == '.':
				buf = append(buf, toLowerASCII(c))
			case c == ':':
				scheme := string(buf)
				if override != stateNone {
					if u.special() != isSpecialScheme(scheme) {
						return true
					}
					if (u.includesCredentials() || u.port >= 0) && scheme == "file" {
						return true
					}
					if u.scheme == "file" && u.hasHost && u.host == "" {
						return true
					}
				}
				u.scheme = scheme
				if override != stateNone {
					if u.port == defaultPort(u.scheme) {
						u.port = -1
					}
					return true
				}
				buf = buf[:0]
				switch {
				case u.scheme == "file":
					state = stateFile
				case u.special() && base != nil && base.scheme == u.scheme:
					state = stateSpecialRelativeOrAuthority
				case u.special():
					state = stateSpecialAuthoritySlashes
				case remainingStartsWith(p, '/'):
					state = statePathOrAuthority
					p++
				default:
					u.opaque, u.opaquePath = true, ""
					state = stateOpaquePath
				}
			case override == stateNone:
				buf = buf[:0]
				state = stateNoScheme
				p = -1
			default:
				return false
			}

		case stateNoScheme:
			switch {
			case base == nil || base.opaque && c != '#':
				return false
			case base.opaque && c == '#':
				u.scheme = base.scheme
				u.opaque, u.opaquePath = true, base.opaquePath
				u.query, u.hasQuery = base.query, base.hasQuery
				u.fragment, u.hasFragment = "", true
				state = stateFragment
			case base.scheme != "file":
				state = stateRelative
				p--
			default:
				state = stateFile
				p--
			}

		case stateSpecialRelativeOrAuthority:
			if c == '/' && remainingStartsWith(p, '/') {
				state = stateSpecialAuthorityIgnoreSlashes
				p++
			} else {
				state = stateRelative
				p--
			}

		case statePathOrAuthority:
			if c == '/' {
				state = stateAuthority
			} else {
				state = statePath
				p--
			}

		case stateRelative:
			u.scheme = base.scheme
			switch {
			case c == '/' || u.special() && c == '\\':
				state = stateRelativeSlash
			default:
				u.username, u.password = base.username, base.password
				u.host, u.hasHost, u.port = base.host, base.hasHost, base.port
				u.path = append([]string(nil), base.path...)
				u.query, u.hasQuery = base.query, base.hasQuery
				switch {
				case c == '?':
					u.query, u.hasQuery = "", true
					state = stateQuery
				case c == '#':
					u.fragment, u.hasFragment = "", true
					state = stateFragment
				case c != eof:
					u.query, u.hasQuery = "", false
					u.shortenPath()
					state = statePath
					p--
				}
			}

		case stateRelativeSlash:
			switch {
			case u.special() && (c == '/' || c == '\\'):
				state = stateSpecialAuthorityIgnoreSlashes
			case c == '/':
				state = stateAuthority
			default:
				u.username, u.password = base.username, base.password
				u.host, u.hasHost, u.port = base.host, base.hasHost, base.port
				state = statePath
				p--
			}

		case stateSpecialAuthoritySlashes:
			state = stateSpecialAuthorityIgnoreSlashes
			if c == '/' && remainingStartsWith(p, '/') {
				p++
			} else {
				p--
			}

		case stateSpecialAuthorityIgnoreSlashes:
			if c != '/' && c != '\\' {
				state = stateAuthority
				p--
			}

		case stateAuthority:
			switch {
			case c == '@':
				if atSignSeen {
					buf = append([]rune("%40"), buf...)
				}
				atSignSeen = true
				for _, r := range buf {
					if r == ':' && !passwordTokenSeen {
						passwordTokenSeen = true
						continue
					}
					if passwordTokenSeen {
						u.password += percentEncodeRune(r, inUserinfoSet)
					} else {
						u.username += percentEncodeRune(r, inUserinfoSet)
					}
				}
				buf = buf[:0]
			case c == eof || c == '/' || c == '?' || c == '#' || u.special() && c == '\\':
				if atSignSeen && len(buf) == 0 {
					return false
				}
				p -= len(buf) + 1
				buf = buf[:0]
				state = stateHost
			default:
				buf = append(buf, c)
			}

		case stateHost, stateHostname:
			switch {
			case override != stateNone && u.scheme == "file":
				p--
				state = stateFileHost
			case c == ':' && !insideBrackets:
				if len(buf) == 0 {
					return false
				}
				if override == stateHostname {
					return false
				}
				host, ok := parseHost(string(buf), !u.special())
				if !ok {
					return false
				}
				u.host, u.hasHost = host, true
				buf = buf[:0]
				state = statePort
			case c == eof || c == '/' || c == '?' || c == '#' || u.special() && c == '\\':
				p--
				if u.special() && len(buf) == 0 {
					return false
				}
				if override != stateNone && len(buf) == 0 && (u.includesCredentials() || u.port >= 0) {
					return false
				}
				host, ok := parseHost(string(buf), !u.special())
				if !ok {
					return false
				}
				u.host, u.hasHost = host, true
				buf = buf[:0]
				state = statePathStart
				if override != stateNone {
					return true
				}
			default:
				if c == '[' {
					insideBrackets = true
				} else if c == ']' {
					insideBrackets = false
				}
				buf = append(buf, c)
			}

		case statePort:
			switch {
			case isASCIIDigit(c):
				buf = append(buf, c)
			case c == eof || c == '/' || c == '?' || c == '#' || u.special() && c == '\\' || override != stateNone:
				if len(buf) > 0 {
					port := 0
					for _, d := range buf {
						port = port*10 + int(d-'0')
						if port > 65535 {
							return false
						}
					}
					if port == defaultPort(u.scheme) {
						u.port = -1
					} else {
						u.port = port
					}
					buf = buf[:0]
					if override != stateNone {
						return true
					}
				}
				if override != stateNone {
					return false
				}
				state = statePathStart
				p--
			default:
				return false
			}

		case stateFile:
			u.scheme = "file"
			u.host, u.hasHost = "", true
			switch {
			case c == '/' || c == '\\':
				state = stateFileSlash
			case base != nil && base.scheme == "file":
				u.host, u.hasHost = base.host, base.hasHost
				u.path = append([]string(nil), base.path...)
				u.query, u.hasQuery = base.query, base.hasQuery
				switch {
				case c == '?':
					u.query, u.hasQuery = "", true
					state = stateQuery
				case c == '#':
					u.fragment, u.hasFragment = "", true
					state = stateFragment
				case c != eof:
					u.query, u.hasQuery = "", false
					if !startsWithWindowsDriveLetter(in[p:]) {
						u.shortenPath()
					} else {
						u.path = nil
					}
					state = statePath
					p--
				}
			default:
				state = statePath
				p--
			}

		case stateFileSlash:
			if c == '/' || c == '\\' {
				state = stateFileHost
			} else {
				if base != nil && base.scheme == "file" {
					u.host, u.hasHost = base.host, base.hasHost
					if !startsWithWindowsDriveLetter(in[p:]) && len(base.path) > 0 && windowsDriveLetter([]rune(base.path[0]), true) {
						u.path = append(u.path, base.path[0])
					}
				}
				state = statePath
				p--
			}

		case stateFileHost:
			if c == eof || c == '/' || c == '\\' || c == '?' || c == '#' {
				p--
				switch {
				case override == stateNone && windowsDriveLetter(buf, false):
					// "file://C|/x": the drive letter is the path, not a host;
					// the buffer is kept and re-read by the path state.
					state = statePath
				case len(buf) == 0:
					u.host, u.hasHost = "", true
					if override != stateNone {
						return true
					}
					state = statePathStart
				default:
					host, ok := parseHost(string(buf), !u.special())
					if !ok {
						return false
					}
					if host == "localhost" {
						host = ""
					}
					u.host, u.hasHost = host, true
					if override != stateNone {
						return true
					}
					buf = buf[:0]
					state = statePathStart
				}
			} else {
				buf = append(buf, c)
			}

		case statePathStart:
			switch {
			case u.special():
				state = statePath
				if c != '/' && c != '\\' {
					p--
				}
			case override == stateNone && c == '?':
				u.query, u.hasQuery = "", true
				state = stateQuery
			case override == stateNone && c == '#':
				u.fragment, u.hasFragment = "", true
				state = stateFragment
			case c != eof:
				state = statePath
				if c != '/' {
					p--
				}
			case override != stateNone && !u.hasHost:
				u.path = append(u.path, "")
			}

		case statePath:
			slash := c == '/' || u.special() && c == '\\'
			if c == eof || slash || override == stateNone && (c == '?' || c == '#') {
				segment := string(buf)
				switch {
				case isDoubleDot(segment):
					u.shortenPath()
					if !slash {
						u.path = append(u.path, "")
					}
				case isSingleDot(segment) && !slash:
					u.path = append(u.path, "")
				case !isSingleDot(segment):
					if u.scheme == "file" && len(u.path) == 0 && windowsDriveLetter(buf, false) {
						buf[1] = ':'
						segment = string(buf)
					}
					u.path = append(u.path, segment)
				}
				buf = buf[:0]
				if c == '?' {
					u.query, u.hasQuery = "", true
					state = stateQuery
				}
				if c == '#' {
					u.fragment, u.hasFragment = "", true
					state = stateFragment
				}
			} else {
				buf = append(buf, []rune(percentEncodeRune(c, inPathSet))...)
			}

		case stateOpaquePath:
			switch c {
			case '?':
				u.query, u.hasQuery = "", true
				state = stateQuery
			case '#':
				u.fragment, u.hasFragment = "", true
				state = stateFragment
			case eof:
			default:
				u.opaquePath += percentEncodeRune(c, inC0ControlSet)
			}

		case stateQuery:
			if override == stateNone && c == '#' || c == eof {
				set := inQuerySet
				if u.special() {
					set = inSpecialQuerySet
				}
				for _, r := range buf {
					u.query += percentEncodeRune(r, set)
				}
				buf = buf[:0]
				if c == '#' {
					u.fragment, u.hasFragment = "", true
					state = stateFragment
				}
			} else {
				buf = append(buf, c)
			}

		case stateFragment:
			if c != eof {
				u.fragment += percentEncodeRune(c, inFragmentSet)
			}
		}
		if p >= len(in) {
			return true
		}
	}
}

// --- percent-encoding ---

func inC0ControlSet(b byte) bool { return b < 0x20 || b > 0x7e }

func inFragmentSet(b byte) bool {
	return inC0ControlSet(b) || b == ' ' || b == '"' || b == '<' || b == '>' || b == '`'
}

func inQuerySet(b byte) bool {
	return inC0ControlSet(b) || b == ' ' || b == '"' || b == '#' || b == '<' || b == '>'
}

func inSpecialQuerySet(b byte) bool { return inQuerySet(b) || b == '\'' }

func inPathSet(b byte) bool {
	return inQuerySet(b) || b == '?' || b == '`' || b == '{' || b == '}'
}

func inUserinfoSet(b byte) bool {
	return inPathSet(b) || strings.IndexByte("/:;=@[\\]^|", b) >= 0
}

func inComponentSet(b byte) bool { return inUserinfoSet(b) || strings.IndexByte("$%&+,", b) >= 0 }

func inFormURLEncodedSet(b byte) bool {
	return inComponentSet(b) || strings.IndexByte("!'()~", b) >= 0
}

const upperHex = "0123456789ABCDEF"

func percentEncodeString(s string, set func(byte) bool) string {
	var sb strings.Builder
	for _, r := range s {
		sb.WriteString(percentEncodeRune(r, set))
	}
	return sb.String()
}

func percentEncodeRune(r rune, set func(byte) bool) string {
	var tmp [utf8.UTFMax]byte
	n := utf8.EncodeRune(tmp[:], r)
	var sb strings.Builder
	for _, b := range tmp[:n] {
		if set(b) {
			sb.WriteByte('%')
			sb.WriteByte(upperHex[b>>4])
			sb.WriteByte(upperHex[b&15])
		} else {
			sb.WriteByte(b)
		}
	}
	return sb.String()
}

func unhex(b byte) byte {
	switch {
	case b >= '0' && b <= '9':
		return b - '0'
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10
	}
	return b - 'A' + 10
}

func isHexByte(b byte) bool { return isASCIIHex(rune(b)) }

// percentDecode decodes %XX sequences; a '%' not followed by two hex
// digits stays as it is.
func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHexByte(s[i+1]) && isHexByte(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

// --- hosts ---

func isForbiddenHostCodePoint(r rune) bool {
	switch r {
	case 0, '\t', '\n', '\r', ' ', '#', '/', ':', '<', '>', '?', '@', '[', '\\', ']', '^', '|':
		return true
	}
	return false
}

func isForbiddenDomainCodePoint(r rune) bool {
	return isForbiddenHostCodePoint(r) || r <= 0x1f || r == '%' || r == 0x7f
}

// parseHost returns the serialized host, or false for failure.
func parseHost(input string, notSpecial bool) (string, bool) {
	if strings.HasPrefix(input, "[") {
		if !strings.HasSuffix(input, "]") {
			return "", false
		}
		addr, ok := parseIPv6([]rune(input[1 : len(input)-1]))
		if !ok {
			return "", false
		}
		return "[" + serializeIPv6(addr) + "]", true
	}
	if notSpecial {
		for _, r := range input {
			if isForbiddenHostCodePoint(r) {
				return "", false
			}
		}
		return percentEncodeString(input, inC0ControlSet), true
	}
	domain := strings.ToValidUTF8(string(percentDecode(input)), "\uFFFD")
	ascii, ok := domainToASCII(domain)
	if !ok {
		return "", false
	}
	for _, r := range ascii {
		if isForbiddenDomainCodePoint(r) {
			return "", false
		}
	}
	if endsInANumber(ascii) {
		v4, ok := parseIPv4(ascii)
		if !ok {
			return "", false
		}
		return serializeIPv4(v4), true
	}
	return ascii, true
}

// idnaProfile is UTS #46 ToASCII with the flags the URL Standard uses:
// CheckHyphens off, CheckBidi and CheckJoiners on, non-transitional,
// UseSTD3ASCIIRules and VerifyDnsLength off.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false),
	idna.CheckHyphens(false), idna.CheckJoiners(true), idna.StrictDomainName(false), idna.VerifyDNSLength(false))

// domainToASCII is the URL Standard's "domain to ASCII" with beStrict off.
func domainToASCII(domain string) (string, bool) {
	if isPlainASCIIDomain(domain) {
		// The common case needs no tables: UTS #46 maps ASCII to lower case.
		return strings.ToLower(domain), domain != ""
	}
	out, err := idnaProfile.ToASCII(domain)
	if err != nil || out == "" {
		return "", false
	}
	return out, true
}

// isPlainASCIIDomain: ASCII with no label that is punycode ("xn--"),
// which ToASCII would have to decode and check.
func isPlainASCIIDomain(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) >= 4 && strings.EqualFold(label[:4], "xn--") {
			return false
		}
	}
	return true
}

func endsInANumber(s string) bool {
	parts := strings.Split(s, ".")
	if parts[len(parts)-1] == "" {
		if len(parts) == 1 {
			return false
		}
		parts = parts[:len(parts)-1]
	}
	last := parts[len(parts)-1]
	if last != "" && strings.Trim(last, "0123456789") == "" {
		return true
	}
	_, ok := parseIPv4Number(last)
	return ok
}

// ipv4Limit caps parsed numbers: anything above it fails the same way.
const ipv4Limit = 1 << 40

func parseIPv4Number(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	radix := uint64(10)
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		radix, s = 16, s[2:]
	case len(s) >= 2 && s[0] == '0':
		radix, s = 8, s[1:]
	}
	if s == "" {
		return 0, true
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		var d uint64
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= radix {
			return 0, false
		}
		if n < ipv4Limit {
			n = n*radix + d
		}
	}
	return n, true
}

func parseIPv4(s string) (uint32, bool) {
	parts := strings.Split(s, ".")
	if parts[len(parts)-1] == "" && len(parts) > 1 {
		parts = parts[:len(parts)-1]
	}
	if len(parts) > 4 {
		return 0, false
	}
	numbers := make([]uint64, len(parts))
	for i, part := range parts {
		n, ok := parseIPv4Number(part)
		if !ok {
			return 0, false
		}
		numbers[i] = n
	}
	for _, n := range numbers[:len(numbers)-1] {
		if n > 255 {
			return 0, false
		}
	}
	last := numbers[len(numbers)-1]
	if last >= 1<<(8*(5-len(numbers))) {
		return 0, false
	}
	v := last
	for i, n := range numbers[:len(numbers)-1] {
		v += n << (8 * (3 - i))
	}
	return uint32(v), true
}

func serializeIPv4(v uint32) string {
	return strconv.Itoa(int(v>>24)) + "." + strconv.Itoa(int(v>>16&255)) + "." +
		strconv.Itoa(int(v>>8&255)) + "." + strconv.Itoa(int(v&255))
}

func parseIPv6(in []rune) ([8]uint16, bool) {
	var addr [8]uint16
	piece, compress, p := 0, -1, 0
	at := func(i int) rune {
		if i < len(in) {
			return in[i]
		}
		return eof
	}
	if at(p) == ':' {
		if at(p+1) != ':' {
			return addr, false
		}
		p += 2
		piece++
		compress = piece
	}
	for at(p) != eof {
		if piece == 8 {
			return addr, false
		}
		if at(p) == ':' {
			if compress != -1 {
				return addr, false
			}
			p++
			piece++
			compress = piece
			continue
		}
		value, length := 0, 0
		for length < 4 && isASCIIHex(at(p)) {
			value = value*16 + int(unhex(byte(at(p))))
			p++
			length++
		}
		if at(p) == '.' {
			if length == 0 {
				return addr, false
			}
			p -= length
			if piece > 6 {
				return addr, false
			}
			numbersSeen := 0
			for at(p) != eof {
				v4 := -1
				if numbersSeen > 0 {
					if at(p) == '.' && numbersSeen < 4 {
						p++
					} else {
						return addr, false
					}
				}
				if !isASCIIDigit(at(p)) {
					return addr, false
				}
				for isASCIIDigit(at(p)) {
					n := int(at(p) - '0')
					switch v4 {
					case -1:
						v4 = n
					case 0:
						return addr, false
					default:
						v4 = v4*10 + n
					}
					if v4 > 255 {
						return addr, false
					}
					p++
				}
				addr[piece] = addr[piece]<<8 | uint16(v4)
				numbersSeen++
				if numbersSeen == 2 || numbersSeen == 4 {
					piece++
				}
			}
			if numbersSeen != 4 {
				return addr, false
			}
			break
		} else if at(p) == ':' {
			p++
			if at(p) == eof {
				return addr, false
			}
		} else if at(p) != eof {
			return addr, false
		}
		addr[piece] = uint16(value)
		piece++
	}
	if compress != -1 {
		swaps := piece - compress
		for piece = 7; piece != 0 && swaps > 0; piece, swaps = piece-1, swaps-1 {
			addr[piece], addr[compress+swaps-1] = addr[compress+swaps-1], addr[piece]
		}
	} else if piece != 8 {
		return addr, false
	}
	return addr, true
}

func serializeIPv6(addr [8]uint16) string {
	// Compress the first longest run of two or more zero pieces.
	compress, best := -1, 1
	for i := 0; i < 8; {
		if addr[i] != 0 {
			i++
			continue
		}
		j := i
		for j < 8 && addr[j] == 0 {
			j++
		}
		if j-i > best {
			compress, best = i, j-i
		}
		i = j
	}
	var sb strings.Builder
	ignore0 := false
	for i := 0; i < 8; i++ {
		if ignore0 && addr[i] == 0 {
			continue
		}
		ignore0 = false
		if compress == i {
			if i == 0 {
				sb.WriteString("::")
			} else {
				sb.WriteString(":")
			}
			ignore0 = true
			continue
		}
		sb.WriteString(strconv.FormatUint(uint64(addr[i]), 16))
		if i != 7 {
			sb.WriteByte(':')
		}
	}
	return sb.String()
}

// --- serializing and the URL class's components ---

func (u *whatwgURL) pathString() string {
	if u.opaque {
		return u.opaquePath
	}
	var sb strings.Builder
	for _, s := range u.path {
		sb.WriteByte('/')
		sb.WriteString(s)
	}
	return sb.String()
}

func (u *whatwgURL) href() string {
	var sb strings.Builder
	sb.WriteString(u.scheme)
	sb.WriteByte(':')
	if u.hasHost {
		sb.WriteString("//")
		if u.includesCredentials() {
			sb.WriteString(u.username)
			if u.password != "" {
				sb.WriteByte(':')
				sb.WriteString(u.password)
			}
			sb.WriteByte('@')
		}
		sb.WriteString(u.host)
		if u.port >= 0 {
			sb.WriteByte(':')
			sb.WriteString(strconv.Itoa(u.port))
		}
	} else if !u.opaque && len(u.path) > 1 && u.path[0] == "" {
		// "web+demo:/.//p": without "/." the path would read as a host.
		sb.WriteString("/.")
	}
	sb.WriteString(u.pathString())
	if u.hasQuery {
		sb.WriteByte('?')
		sb.WriteString(u.query)
	}
	if u.hasFragment {
		sb.WriteByte('#')
		sb.WriteString(u.fragment)
	}
	return sb.String()
}

func (u *whatwgURL) origin() string {
	switch u.scheme {
	case "http", "https", "ws", "wss", "ftp":
		return u.scheme + "://" + u.hostPort()
	case "blob":
		if inner, ok := parseWHATWG(u.pathString(), nil); ok && (inner.scheme == "http" || inner.scheme == "https") {
			return inner.origin()
		}
	}
	return "null"
}

func (u *whatwgURL) hostPort() string {
	if !u.hasHost {
		return ""
	}
	if u.port < 0 {
		return u.host
	}
	return u.host + ":" + strconv.Itoa(u.port)
}

func (u *whatwgURL) portString() string {
	if u.port < 0 {
		return ""
	}
	return strconv.Itoa(u.port)
}

func (u *whatwgURL) search() string {
	if !u.hasQuery || u.query == "" {
		return ""
	}
	return "?" + u.query
}

func (u *whatwgURL) hash() string {
	if !u.hasFragment || u.fragment == "" {
		return ""
	}
	return "#" + u.fragment
}

// stripTrailingSpacesFromOpaquePath: once neither a query nor a fragment
// follows an opaque path, trailing spaces would not survive a re-parse.
func (u *whatwgURL) stripTrailingSpacesFromOpaquePath() {
	if u.opaque && !u.hasFragment && !u.hasQuery {
		u.opaquePath = strings.TrimRight(u.opaquePath, " ")
	}
}

// The setters of the URL class. As the standard does, each runs the
// parser on u itself with a state override: what the parser accepted
// before it stopped stays (setting host to "example.com:" changes the host
// and keeps the port).

func (u *whatwgURL) setProtocol(v string) { u.parse(v+":", nil, stateSchemeStart) }

func (u *whatwgURL) setUsername(v string) {
	if !u.cannotHaveCredentialsOrPort() {
		u.username = percentEncodeString(v, inUserinfoSet)
	}
}

func (u *whatwgURL) setPassword(v string) {
	if !u.cannotHaveCredentialsOrPort() {
		u.password = percentEncodeString(v, inUserinfoSet)
	}
}

func (u *whatwgURL) setHost(v string) {
	if !u.opaque {
		u.parse(v, nil, stateHost)
	}
}

func (u *whatwgURL) setHostname(v string) {
	if !u.opaque {
		u.parse(v, nil, stateHostname)
	}
}

func (u *whatwgURL) setPort(v string) {
	switch {
	case u.cannotHaveCredentialsOrPort():
	case v == "":
		u.port = -1
	default:
		u.parse(v, nil, statePort)
	}
}

func (u *whatwgURL) setPathname(v string) {
	if !u.opaque {
		u.path = nil
		u.parse(v, nil, statePathStart)
	}
}

// setSearch sets the query; the caller re-reads the search params list.
func (u *whatwgURL) setSearch(v string) {
	if v == "" {
		u.query, u.hasQuery = "", false
		u.stripTrailingSpacesFromOpaquePath()
		return
	}
	u.query, u.hasQuery = "", true
	u.parse(strings.TrimPrefix(v, "?"), nil, stateQuery)
}

func (u *whatwgURL) setHash(v string) {
	if v == "" {
		u.fragment, u.hasFragment = "", false
		u.stripTrailingSpacesFromOpaquePath()
		return
	}
	u.fragment, u.hasFragment = "", true
	u.parse(strings.TrimPrefix(v, "#"), nil, stateFragment)
}

// --- application/x-www-form-urlencoded (URLSearchParams) ---

type nameValue struct{ name, value string }

func parseFormURLEncoded(s string) []nameValue {
	var list []nameValue
	for _, seq := range strings.Split(s, "&") {
		if seq == "" {
			continue
		}
		name, value, _ := strings.Cut(seq, "=")
		list = append(list, nameValue{formDecode(name), formDecode(value)})
	}
	return list
}

func formDecode(s string) string {
	return strings.ToValidUTF8(string(percentDecode(strings.ReplaceAll(s, "+", " "))), "\uFFFD")
}

func serializeFormURLEncoded(list []nameValue) string {
	var sb strings.Builder
	for i, nv := range list {
		if i > 0 {
			sb.WriteByte('&')
		}
		formEncode(&sb, nv.name)
		sb.WriteByte('=')
		formEncode(&sb, nv.value)
	}
	return sb.String()
}

func formEncode(sb *strings.Builder, s string) {
	for _, r := range s {
		if r == ' ' {
			sb.WriteByte('+')
			continue
		}
		sb.WriteString(percentEncodeRune(r, inFormURLEncodedSet))
	}
}
