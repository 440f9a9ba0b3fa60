package jsconfig

import (
	"sort"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/dop251/goja"
	"golang.org/x/net/idna"
)

// The URL and URLSearchParams classes (the globals and the url built-in)
// and url's functions, on the WHATWG parser in whatwgurl.go. They replace
// goja_nodejs' url module, whose relative resolution differs from Node's.

// urlClasses holds one load's URL and URLSearchParams classes and the
// state behind each of their objects, keyed by the JavaScript object.
type urlClasses struct {
	rt          *jsRuntime
	urlCtor     *goja.Object
	paramsCtor  *goja.Object
	paramsProto *goja.Object
	iterProto   *goja.Object
	urls        map[*goja.Object]*jsURL
	params      map[*goja.Object]*jsParams
	iters       map[*goja.Object]*jsParamsIter
	collect     goja.Callable // iterates a sequence of pairs; made on first use
}

// jsURL is the state of one URL object.
type jsURL struct {
	rec    *whatwgURL
	params *goja.Object // its searchParams, made on first use
}

// jsParams is the state of one URLSearchParams object; url is set for a
// URL's searchParams, whose changes rewrite the URL's query.
type jsParams struct {
	list []nameValue
	url  *jsURL
}

type jsParamsIter struct {
	params *jsParams
	kind   string // "key", "value" or "key+value"
	index  int
}

func newURLClasses(rt *jsRuntime) *urlClasses {
	m := &urlClasses{rt: rt, urls: map[*goja.Object]*jsURL{}, params: map[*goja.Object]*jsParams{}, iters: map[*goja.Object]*jsParamsIter{}}
	m.urlCtor = m.makeURLClass()
	m.paramsCtor, m.paramsProto = m.makeParamsClass()
	return m
}

// nodeTypeError is a TypeError carrying Node's error code.
func (rt *jsRuntime) nodeTypeError(code, msg string) *goja.Object {
	e := rt.vm.NewTypeError(msg)
	rt.set(e, "code", code)
	return e
}

func (m *urlClasses) invalidURL(input string, base *string) *goja.Object {
	e := m.rt.nodeTypeError("ERR_INVALID_URL", "Invalid URL")
	m.rt.set(e, "input", input)
	if base != nil {
		m.rt.set(e, "base", *base)
	}
	return e
}

// usv converts an argument to a string as WebIDL's USVString does (a
// Symbol throws a TypeError).
func usv(v goja.Value) string { return v.ToString().String() }

func (m *urlClasses) method(o *goja.Object, name string, fn func(goja.FunctionCall) goja.Value) {
	if err := o.DefineDataProperty(name, m.rt.vm.ToValue(fn), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE); err != nil {
		panic(err)
	}
}

func (m *urlClasses) accessor(o *goja.Object, name string, get func(goja.FunctionCall) goja.Value, set func(goja.FunctionCall) goja.Value) {
	var setter goja.Value
	if set != nil {
		setter = m.rt.vm.ToValue(set)
	}
	if err := o.DefineAccessorProperty(name, m.rt.vm.ToValue(get), setter, goja.FLAG_TRUE, goja.FLAG_TRUE); err != nil {
		panic(err)
	}
}

func (m *urlClasses) nameClass(ctor *goja.Object, name string) *goja.Object {
	vm := m.rt.vm
	// A Go constructor is named after its Go function; classes print their own name.
	_ = ctor.DefineDataProperty("name", vm.ToValue(name), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	proto := ctor.Get("prototype").ToObject(vm)
	_ = proto.DefineDataPropertySymbol(goja.SymToStringTag, vm.ToValue(name), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	return proto
}

// --- URL ---

func (m *urlClasses) thisURL(call goja.FunctionCall) *jsURL {
	if o, ok := call.This.(*goja.Object); ok {
		if u := m.urls[o]; u != nil {
			return u
		}
	}
	panic(m.rt.nodeTypeError("ERR_INVALID_THIS", `Value of "this" must be of type URL`))
}

// parse is new URL(input, base) without the object: the record, or the
// error Node throws.
func (m *urlClasses) parse(args []goja.Value) (*whatwgURL, *goja.Object) {
	if len(args) == 0 {
		return nil, m.rt.nodeTypeError("ERR_MISSING_ARGS", `The "url" argument must be specified`)
	}
	input := usv(args[0])
	var base *whatwgURL
	if len(args) > 1 && !goja.IsUndefined(args[1]) {
		baseStr := usv(args[1])
		b, ok := parseWHATWG(baseStr, nil)
		if !ok {
			return nil, m.invalidURL(input, &baseStr)
		}
		base = b
		rec, ok := parseWHATWG(input, base)
		if !ok {
			return nil, m.invalidURL(input, &baseStr)
		}
		return rec, nil
	}
	rec, ok := parseWHATWG(input, nil)
	if !ok {
		return nil, m.invalidURL(input, nil)
	}
	return rec, nil
}

// newURL makes a URL object for a parsed record.
func (m *urlClasses) newURL(rec *whatwgURL) *goja.Object {
	o := m.rt.vm.CreateObject(m.urlCtor.Get("prototype").ToObject(m.rt.vm))
	m.urls[o] = &jsURL{rec: rec}
	return o
}

func (m *urlClasses) makeURLClass() *goja.Object {
	vm := m.rt.vm
	ctor := vm.ToValue(func(call goja.ConstructorCall) *goja.Object {
		rec, err := m.parse(call.Arguments)
		if err != nil {
			panic(err)
		}
		m.urls[call.This] = &jsURL{rec: rec}
		return nil
	}).(*goja.Object)
	proto := m.nameClass(ctor, "URL")
	m.method(ctor, "canParse", func(call goja.FunctionCall) goja.Value {
		_, err := m.parse(call.Arguments)
		if err != nil && len(call.Arguments) == 0 {
			panic(err)
		}
		return vm.ToValue(err == nil)
	})
	m.method(ctor, "parse", func(call goja.FunctionCall) goja.Value {
		rec, err := m.parse(call.Arguments)
		if err != nil {
			if len(call.Arguments) == 0 {
				panic(err)
			}
			return goja.Null()
		}
		return m.newURL(rec)
	})

	str := func(get func(*whatwgURL) string) func(goja.FunctionCall) goja.Value {
		return func(call goja.FunctionCall) goja.Value { return vm.ToValue(get(m.thisURL(call).rec)) }
	}
	set := func(apply func(*jsURL, string)) func(goja.FunctionCall) goja.Value {
		return func(call goja.FunctionCall) goja.Value {
			apply(m.thisURL(call), usv(call.Argument(0)))
			return goja.Undefined()
		}
	}
	href := str((*whatwgURL).href)
	m.accessor(proto, "href", href, set(func(u *jsURL, v string) {
		rec, ok := parseWHATWG(v, nil)
		if !ok {
			panic(m.invalidURL(v, nil))
		}
		u.rec = rec
		m.reparams(u, rec.query, rec.hasQuery)
	}))
	m.accessor(proto, "origin", str((*whatwgURL).origin), nil)
	m.accessor(proto, "protocol", str(func(u *whatwgURL) string { return u.scheme + ":" }), set(func(u *jsURL, v string) { u.rec.setProtocol(v) }))
	m.accessor(proto, "username", str(func(u *whatwgURL) string { return u.username }), set(func(u *jsURL, v string) { u.rec.setUsername(v) }))
	m.accessor(proto, "password", str(func(u *whatwgURL) string { return u.password }), set(func(u *jsURL, v string) { u.rec.setPassword(v) }))
	m.accessor(proto, "host", str((*whatwgURL).hostPort), set(func(u *jsURL, v string) { u.rec.setHost(v) }))
	m.accessor(proto, "hostname", str(func(u *whatwgURL) string { return u.host }), set(func(u *jsURL, v string) { u.rec.setHostname(v) }))
	m.accessor(proto, "port", str((*whatwgURL).portString), set(func(u *jsURL, v string) { u.rec.setPort(v) }))
	m.accessor(proto, "pathname", str((*whatwgURL).pathString), set(func(u *jsURL, v string) { u.rec.setPathname(v) }))
	m.accessor(proto, "search", str((*whatwgURL).search), set(func(u *jsURL, v string) {
		u.rec.setSearch(v)
		m.reparams(u, strings.TrimPrefix(v, "?"), v != "")
	}))
	m.accessor(proto, "searchParams", func(call goja.FunctionCall) goja.Value {
		u := m.thisURL(call)
		if u.params == nil {
			u.params = vm.CreateObject(m.paramsProto)
			m.params[u.params] = &jsParams{url: u}
			m.reparams(u, u.rec.query, u.rec.hasQuery)
		}
		return u.params
	}, nil)
	m.accessor(proto, "hash", str((*whatwgURL).hash), set(func(u *jsURL, v string) { u.rec.setHash(v) }))
	m.method(proto, "toString", href)
	m.method(proto, "toJSON", href)
	return ctor
}

// reparams re-reads a URL's searchParams list after its query changed.
func (m *urlClasses) reparams(u *jsURL, query string, has bool) {
	if u.params == nil {
		return
	}
	p := m.params[u.params]
	p.list = nil
	if has {
		p.list = parseFormURLEncoded(query)
	}
}

// --- URLSearchParams ---

func (m *urlClasses) thisParams(call goja.FunctionCall) *jsParams {
	if o, ok := call.This.(*goja.Object); ok {
		if p := m.params[o]; p != nil {
			return p
		}
	}
	panic(m.rt.nodeTypeError("ERR_INVALID_THIS", `Value of "this" must be of type URLSearchParams`))
}

// update writes the list back into the URL it belongs to.
func (p *jsParams) update() {
	if p.url == nil {
		return
	}
	q := serializeFormURLEncoded(p.list)
	p.url.rec.query, p.url.rec.hasQuery = q, q != ""
	if q == "" {
		p.url.rec.stripTrailingSpacesFromOpaquePath()
	}
}

func (m *urlClasses) missingArgs(call goja.FunctionCall, names ...string) {
	if len(call.Arguments) >= len(names) {
		return
	}
	msg := `The "` + names[0] + `" argument must be specified`
	if len(names) == 2 {
		msg = `The "` + names[0] + `" and "` + names[1] + `" arguments must be specified`
	}
	panic(m.rt.nodeTypeError("ERR_MISSING_ARGS", msg))
}

func (m *urlClasses) tupleError() *goja.Object {
	return m.rt.nodeTypeError("ERR_INVALID_TUPLE", "Each query pair must be an iterable [name, value] tuple")
}

// collectPairsSource turns a sequence of [name, value] pairs into
// append(name, value) calls, with Node's checks.
const collectPairsSource = `(function (init, append, tupleError) {
  for (const pair of init) {
    if (pair === null || (typeof pair !== "object" && typeof pair !== "function") || typeof pair[Symbol.iterator] !== "function") throw tupleError();
    const items = Array.isArray(pair) ? pair : Array.from(pair);
    if (items.length !== 2) throw tupleError();
    append(` + "`${items[0]}`, `${items[1]}`" + `);
  }
})`

func (m *urlClasses) initParams(p *jsParams, init goja.Value) {
	vm := m.rt.vm
	if init == nil || goja.IsUndefined(init) || goja.IsNull(init) {
		return
	}
	o, isObject := init.(*goja.Object)
	if !isObject {
		p.list = parseFormURLEncoded(strings.TrimPrefix(usv(init), "?"))
		return
	}
	if other := m.params[o]; other != nil && o.GetSymbol(goja.SymIterator) == m.paramsProto.GetSymbol(goja.SymIterator) {
		p.list = append([]nameValue(nil), other.list...)
		return
	}
	if method := o.GetSymbol(goja.SymIterator); method != nil && !goja.IsUndefined(method) && !goja.IsNull(method) {
		if _, ok := goja.AssertFunction(method); !ok {
			panic(m.rt.nodeTypeError("ERR_ARG_NOT_ITERABLE", "Query pairs must be iterable"))
		}
		if m.collect == nil {
			fn, err := vm.RunString(collectPairsSource)
			if err != nil {
				panic(err)
			}
			m.collect, _ = goja.AssertFunction(fn)
		}
		appendPair := func(name, value string) { p.list = append(p.list, nameValue{name, value}) }
		if _, err := m.collect(goja.Undefined(), o, vm.ToValue(appendPair), vm.ToValue(m.tupleError)); err != nil {
			panic(err)
		}
		return
	}
	// A record: own enumerable string keys; a later key that converts to
	// the same string replaces the earlier value.
	seen := map[string]int{}
	for _, k := range m.rt.objectKeys(o) {
		v := usv(o.Get(k))
		if i, ok := seen[k]; ok {
			p.list[i].value = v
			continue
		}
		seen[k] = len(p.list)
		p.list = append(p.list, nameValue{k, v})
	}
}

func (m *urlClasses) makeParamsClass() (*goja.Object, *goja.Object) {
	vm := m.rt.vm
	ctor := vm.ToValue(func(call goja.ConstructorCall) *goja.Object {
		p := &jsParams{}
		m.initParams(p, call.Argument(0))
		m.params[call.This] = p
		return nil
	}).(*goja.Object)
	proto := m.nameClass(ctor, "URLSearchParams")
	m.accessor(proto, "size", func(call goja.FunctionCall) goja.Value { return vm.ToValue(len(m.thisParams(call).list)) }, nil)
	m.method(proto, "append", func(call goja.FunctionCall) goja.Value {
		p := m.thisParams(call)
		m.missingArgs(call, "name", "value")
		p.list = append(p.list, nameValue{usv(call.Argument(0)), usv(call.Argument(1))})
		p.update()
		return goja.Undefined()
	})
	m.method(proto, "delete", func(call goja.FunctionCall) goja.Value {
		p := m.thisParams(call)
		m.missingArgs(call, "name")
		name := usv(call.Argument(0))
		byValue, value := !goja.IsUndefined(call.Argument(1)), ""
		if byValue {
			value = usv(call.Argument(1))
		}
		kept := p.list[:0]
		for _, nv := range p.list {
			if nv.name != name || byValue && nv.value != value {
				kept = append(kept, nv)
			}
		}
		p.list = kept
		p.update()
		return goja.Undefined()
	})
	m.method(proto, "get", func(call goja.FunctionCall) goja.Value {
		p := m.thisParams(call)
		m.missingArgs(call, "name")
		name := usv(call.Argument(0))
		for _, nv := range p.list {
			if nv.name == name {
				return vm.ToValue(nv.value)
			}
		}
		return goja.Null()
	})
	m.method(proto, "getAll", func(call goja.FunctionCall) goja.Value {
		p := m.thisParams(call)
		m.missingArgs(call, "name")
		name := usv(call.Argument(0))
		var values []any
		for _, nv := range p.list {
			if nv.name == name {
				values = append(values, nv.value)
			}
		}
		return vm.NewArray(values...)
	})
	m.method(proto, "has", func(call goja.FunctionCall) goja.Value {
		p := m.thisParams(call)
		m.missingArgs(call, "name")
		name := usv(call.Argument(0))
		byValue, value := !goja.IsUndefined(call.Argument(1)), ""
		if byValue {
			value = usv(call.Argument(1))
		}
		for _, nv := range p.list {
			if nv.name == name && (!byValue || nv.value == value) {
				return vm.ToValue(true)
			}
		}
		return vm.ToValue(false)
	})
	m.method(proto, "set", func(call goja.FunctionCall) goja.Value {
		p := m.thisParams(call)
		m.missingArgs(call, "name", "value")
		name, value := usv(call.Argument(0)), usv(call.Argument(1))
		found := false
		kept := p.list[:0]
		for _, nv := range p.list {
			if nv.name == name {
				if found {
					continue
				}
				found, nv.value = true, value
			}
			kept = append(kept, nv)
		}
		p.list = kept
		if !found {
			p.list = append(p.list, nameValue{name, value})
		}
		p.update()
		return goja.Undefined()
	})
	m.method(proto, "sort", func(call goja.FunctionCall) goja.Value {
		p := m.thisParams(call)
		// Names compare by UTF-16 code units, as JavaScript strings do.
		sort.SliceStable(p.list, func(i, j int) bool { return utf16Less(p.list[i].name, p.list[j].name) })
		p.update()
		return goja.Undefined()
	})
	m.method(proto, "forEach", func(call goja.FunctionCall) goja.Value {
		p := m.thisParams(call)
		fn, ok := goja.AssertFunction(call.Argument(0))
		if !ok {
			panic(m.rt.nodeTypeError("ERR_INVALID_ARG_TYPE", `The "callback" argument must be of type function. `+describeReceived(m.rt, call.Argument(0))))
		}
		for i := 0; i < len(p.list); i++ {
			nv := p.list[i]
			if _, err := fn(call.Argument(1), vm.ToValue(nv.value), vm.ToValue(nv.name), call.This); err != nil {
				panic(err)
			}
		}
		return goja.Undefined()
	})
	m.method(proto, "toString", func(call goja.FunctionCall) goja.Value {
		return vm.ToValue(serializeFormURLEncoded(m.thisParams(call).list))
	})

	m.iterProto = vm.NewObject()
	_ = m.iterProto.DefineDataPropertySymbol(goja.SymToStringTag, vm.ToValue("URLSearchParams Iterator"), goja.FLAG_FALSE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	_ = m.iterProto.DefineDataPropertySymbol(goja.SymIterator, vm.ToValue(func(call goja.FunctionCall) goja.Value { return call.This }), goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	m.method(m.iterProto, "next", func(call goja.FunctionCall) goja.Value {
		o, _ := call.This.(*goja.Object)
		it := m.iters[o]
		if it == nil {
			panic(m.rt.nodeTypeError("ERR_INVALID_THIS", `Value of "this" must be of type URLSearchParamsIterator`))
		}
		res := vm.NewObject()
		if it.index >= len(it.params.list) {
			m.rt.set(res, "value", goja.Undefined())
			m.rt.set(res, "done", true)
			return res
		}
		nv := it.params.list[it.index]
		it.index++
		switch it.kind {
		case "key":
			m.rt.set(res, "value", nv.name)
		case "value":
			m.rt.set(res, "value", nv.value)
		default:
			m.rt.set(res, "value", vm.NewArray(nv.name, nv.value))
		}
		m.rt.set(res, "done", false)
		return res
	})
	iterator := func(kind string) func(goja.FunctionCall) goja.Value {
		return func(call goja.FunctionCall) goja.Value {
			p := m.thisParams(call)
			o := vm.CreateObject(m.iterProto)
			m.iters[o] = &jsParamsIter{params: p, kind: kind}
			return o
		}
	}
	m.method(proto, "keys", iterator("key"))
	m.method(proto, "values", iterator("value"))
	entries := vm.ToValue(iterator("key+value"))
	_ = proto.DefineDataProperty("entries", entries, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_TRUE)
	_ = proto.DefineDataPropertySymbol(goja.SymIterator, entries, goja.FLAG_TRUE, goja.FLAG_TRUE, goja.FLAG_FALSE)
	return ctor, proto
}

func utf16Less(a, b string) bool {
	x, y := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	for i := 0; i < len(x) && i < len(y); i++ {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return len(x) < len(y)
}

// describeReceived is the "Received …" tail of Node's ERR_INVALID_ARG_TYPE.
func describeReceived(rt *jsRuntime, v goja.Value) string {
	switch {
	case v == nil || goja.IsUndefined(v):
		return "Received undefined"
	case goja.IsNull(v):
		return "Received null"
	}
	if o, ok := v.(*goja.Object); ok {
		if _, isFn := goja.AssertFunction(o); isFn {
			name := ""
			if n := o.Get("name"); n != nil {
				name = n.String()
			}
			if name == "" {
				return "Received function "
			}
			return "Received function " + name
		}
		if c, ok := o.Get("constructor").(*goja.Object); ok {
			if n := c.Get("name"); n != nil && n.String() != "" {
				return "Received an instance of " + n.String()
			}
		}
		return "Received [object Object]"
	}
	var shown, kind string
	switch e := v.Export().(type) {
	case string:
		shown, kind = "'"+strings.ReplaceAll(e, "'", `\'`)+"'", "string"
	case bool:
		shown, kind = v.String(), "boolean"
	case int64, float64:
		shown, kind = v.String(), "number"
	default:
		shown, kind = v.String(), "symbol"
		if goja.IsBigInt(v) {
			shown, kind = v.String()+"n", "bigint"
		}
	}
	if len(shown) > 28 {
		shown = shown[:25] + "..."
	}
	return "Received type " + kind + " (" + shown + ")"
}

// --- the url built-in ---

func (rt *jsRuntime) urlModule() *goja.Object {
	vm := rt.vm
	m := vm.NewObject()
	rt.set(m, "URL", rt.urlClasses.urlCtor)
	rt.set(m, "URLSearchParams", rt.urlClasses.paramsCtor)
	rt.set(m, "fileURLToPath", func(call goja.FunctionCall) goja.Value {
		return vm.ToValue(rt.fileURLToPath(call.Argument(0)))
	})
	rt.set(m, "pathToFileURL", func(call goja.FunctionCall) goja.Value {
		a := call.Argument(0)
		if !goja.IsString(a) {
			panic(rt.nodeTypeError("ERR_INVALID_ARG_TYPE", `The "path" argument must be of type string. `+describeReceived(rt, a)))
		}
		p := a.String()
		abs := pathResolve(rt.cwd(), p)
		// path.resolve drops a trailing slash; a directory's URL keeps it.
		if strings.HasSuffix(p, "/") && abs != "/" {
			abs += "/"
		}
		rec, ok := parseWHATWG("file://"+encodePathChars(abs), nil)
		if !ok {
			panic(rt.urlClasses.invalidURL("file://"+encodePathChars(abs), nil))
		}
		return rt.urlClasses.newURL(rec)
	})
	rt.set(m, "domainToASCII", func(call goja.FunctionCall) goja.Value {
		if len(call.Arguments) == 0 {
			panic(rt.nodeTypeError("ERR_MISSING_ARGS", `The "domain" argument must be specified`))
		}
		ascii, ok := domainToASCII(usv(call.Argument(0)))
		if !ok {
			ascii = ""
		}
		return vm.ToValue(ascii)
	})
	rt.set(m, "domainToUnicode", func(call goja.FunctionCall) goja.Value {
		if len(call.Arguments) == 0 {
			panic(rt.nodeTypeError("ERR_MISSING_ARGS", `The "domain" argument must be specified`))
		}
		s, err := idnaUnicodeProfile.ToUnicode(usv(call.Argument(0)))
		if err != nil {
			s = ""
		}
		return vm.ToValue(s)
	})
	return m
}

var idnaUnicodeProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false),
	idna.CheckHyphens(false), idna.CheckJoiners(true), idna.StrictDomainName(false), idna.VerifyDNSLength(false))

// isURLLike is Node's test for a URL argument: an object with a truthy
// href and protocol and without the legacy url.parse() fields.
func isURLLike(v goja.Value) (*goja.Object, bool) {
	o, ok := v.(*goja.Object)
	if !ok {
		return nil, false
	}
	truthy := func(k string) bool { x := o.Get(k); return x != nil && x.ToBoolean() }
	absent := func(k string) bool { x := o.Get(k); return x == nil || goja.IsUndefined(x) }
	if truthy("href") && truthy("protocol") && absent("auth") && absent("path") {
		return o, true
	}
	return nil, false
}

// fileURLToPath is url.fileURLToPath on POSIX: a string is parsed as a
// URL; a URL's pathname is percent-decoded as decodeURIComponent does.
func (rt *jsRuntime) fileURLToPath(v goja.Value) string {
	var protocol, hostname, pathname string
	if goja.IsString(v) {
		rec, ok := parseWHATWG(v.String(), nil)
		if !ok {
			panic(rt.urlClasses.invalidURL(v.String(), nil))
		}
		protocol, hostname, pathname = rec.scheme+":", rec.host, rec.pathString()
	} else if o, ok := isURLLike(v); ok {
		protocol, hostname, pathname = o.Get("protocol").String(), o.Get("hostname").String(), o.Get("pathname").String()
	} else {
		panic(rt.nodeTypeError("ERR_INVALID_ARG_TYPE", `The "path" argument must be of type string or an instance of URL. `+describeReceived(rt, v)))
	}
	if protocol != "file:" {
		panic(rt.nodeTypeError("ERR_INVALID_URL_SCHEME", "The URL must be of scheme file"))
	}
	if hostname != "" {
		panic(rt.nodeTypeError("ERR_INVALID_FILE_URL_HOST", `File URL host must be "localhost" or empty on linux`))
	}
	if strings.Contains(strings.ToLower(pathname), "%2f") {
		panic(rt.nodeTypeError("ERR_INVALID_FILE_URL_PATH", "File URL path must not include encoded / characters"))
	}
	p, ok := decodeURIComponent(pathname)
	if !ok {
		// V8's wording; goja's own decodeURIComponent says "Malformed URI".
		e, err := rt.vm.New(rt.vm.Get("URIError"), rt.vm.ToValue("URI malformed"))
		if err != nil {
			panic(err)
		}
		panic(e)
	}
	return p
}

// decodeURIComponent is JavaScript's: every %XX is decoded, and a sequence
// that is not complete, valid UTF-8 fails.
func decodeURIComponent(s string) (string, bool) {
	hexAt := func(i int) (byte, bool) {
		if i+2 >= len(s) || s[i] != '%' || !isHexByte(s[i+1]) || !isHexByte(s[i+2]) {
			return 0, false
		}
		return unhex(s[i+1])<<4 | unhex(s[i+2]), true
	}
	var out strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '%' {
			out.WriteByte(s[i])
			i++
			continue
		}
		b, ok := hexAt(i)
		if !ok {
			return "", false
		}
		i += 3
		n := 0
		switch {
		case b < 0x80:
			out.WriteByte(b)
			continue
		case b&0xE0 == 0xC0:
			n = 2
		case b&0xF0 == 0xE0:
			n = 3
		case b&0xF8 == 0xF0:
			n = 4
		default:
			return "", false
		}
		seq := []byte{b}
		for k := 1; k < n; k++ {
			if i >= len(s) {
				return "", false
			}
			c, ok := hexAt(i)
			if !ok || c&0xC0 != 0x80 {
				return "", false
			}
			seq = append(seq, c)
			i += 3
		}
		// DecodeRune rejects overlong forms and surrogates, as JavaScript does.
		if r, size := utf8.DecodeRune(seq); size != n || r == utf8.RuneError && size == 1 {
			return "", false
		}
		out.Write(seq)
	}
	return out.String(), true
}

// encodePathChars is what url.pathToFileURL escapes in a path before the
// URL parser sees it: '%', the characters that would end or change the
// path ('?', '#', '\\'), and those RFC 1738 calls unsafe.
func encodePathChars(p string) string {
	var sb strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%', '\t', '\n', '\r', ' ', '"', '#', '?', '[', '\\', ']', '^', '|', '~':
			sb.WriteByte('%')
			sb.WriteByte(upperHex[c>>4])
			sb.WriteByte(upperHex[c&15])
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
