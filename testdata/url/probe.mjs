// The URL cases behind golden.json, and how each one is observed. It runs
// unchanged under Node (generate.mjs records golden.json) and inside a
// rollbridge config (jsconfig's TestURLGolden compares with golden.json).

// [input, base]; a missing base means new URL(input) with one argument.
const pairs = [
  // Relative references against a config's import.meta.url.
  ["./data.json", "file:///srv/app/rollbridge.js"],
  ["data.json", "file:///srv/app/rollbridge.js"],
  ["./.env", "file:///srv/app/rollbridge.js"],
  ["../shared/.env", "file:///srv/app/rollbridge.js"],
  ["../../../../etc/passwd", "file:///srv/app/rollbridge.js"],
  ["sub/dir/", "file:///srv/app/rollbridge.js"],
  [".", "file:///srv/app/rollbridge.js"],
  ["..", "file:///srv/app/rollbridge.js"],
  ["./", "file:///srv/app/rollbridge.js"],
  ["/etc/hosts", "file:///srv/app/rollbridge.js"],
  ["?v=2", "file:///srv/app/rollbridge.js"],
  ["#frag", "file:///srv/app/rollbridge.js"],
  ["", "file:///srv/app/rollbridge.js"],
  ["x.json?a=1#b", "file:///srv/app/rollbridge.js"],
  ["//fileserver/share/x", "file:///srv/app/rollbridge.js"],
  ["file:other.js", "file:///srv/app/rollbridge.js"],
  ["a%20b.json", "file:///srv/app/rollbridge.js"],
  ["my file #1.json", "file:///srv/app/rollbridge.js"],
  ["caf\u00e9/\u65e5\u672c.json", "file:///srv/app/rollbridge.js"],
  ["a/./b/../c", "file:///srv/app/rollbridge.js"],
  ["%2e%2e/x", "file:///srv/app/rollbridge.js"],
  [".%2E/y", "file:///srv/app/rollbridge.js"],
  ["a\\b\\c.json", "file:///srv/app/rollbridge.js"],
  ["/C:/x", "file:///srv/app/rollbridge.js"],
  ["./data.json", "file:///srv/app/"],
  ["../data.json", "file:///srv/app/config/"],
  ["data.json", "file:///"],
  // Relative references against http(s) bases.
  ["sub/x.json", "https://example.com/a/b.js"],
  ["../x", "https://example.com/a/b.js"],
  ["../../../../x", "https://example.com/a/b.js"],
  ["/root", "https://example.com/a/b.js"],
  ["//cdn.example.org/lib.js", "https://example.com/a/b.js"],
  ["?q=1", "https://example.com/a/b.js"],
  ["#top", "https://example.com/a/b.js"],
  ["http://other.example/x", "https://example.com/a/b.js"],
  ["https:rel", "https://example.com/a/b.js"],
  ["http:rel", "https://example.com/a/b.js"],
  ["./a?b#c", "https://example.com/a/b.js"],
  ["a/b/../../c", "https://example.com/a/b.js"],
  ["x y?a b'c#d e", "https://example.com/a/b.js"],
  ["\\\\other\\x", "https://example.com/a/b.js"],
  ["", "http://h/p/q?x=1#f"],
  ["#g", "http://h/p/q?x=1#f"],
  ["?y", "http://h/p/q?x=1#f"],
  ["r", "http://h/p/q?x=1#f"],
  ["file.txt", "http://h/dir/"],
  ["../up", "http://h/dir/"],
  ["x", "http://user:pw@h:8080/a/b"],
  ["//other/x", "http://user:pw@h:8080/a/b"],
  // Non-special schemes and opaque paths.
  ["x", "foo://host/a/b"],
  ["../x", "foo://host/a/b"],
  ["x", "mailto:a@b.example"],
  ["#f", "mailto:a@b.example"],
  ["/x", "foo:/a/b"],
  ["//h/x", "foo:/a"],
  ["x y?a b'c#d e", "foo://host/"],
  // Absolute inputs.
  ["HTTP://EXAMPLE.COM:80/a/../b/./c?x#y"],
  ["https://user:pa ss@host:8443/p"],
  ["http://[::1]:3000/"],
  ["http://[0:0:0:0:0:ffff:7f00:1]/"],
  ["http://[1:0:0:2::3:0]/"],
  ["http://0x7f.1/"],
  ["http://127.1/"],
  ["http://\u00c9XAMPLE.com/"],
  ["http://example.com./"],
  ["http://a_b.example/"],
  ["file:///srv/app/"],
  ["file://localhost/etc/hosts"],
  ["file://server/share"],
  ["file:///C|/x"],
  ["FILE:///tmp/a b"],
  ["file:/srv/app"],
  ["data:text/plain,hi there"],
  ["javascript:alert(1)"],
  ["blob:https://example.com/uuid"],
  ["ws://x:80/"],
  ["wss://x:444/p"],
  ["  http://trim.example/  "],
  ["ht\ttp://a\n.example/b"],
  ["sc://\u00f1/x"],
  ["non-spec:/.//p"],
  ["http://host/%7e?%7e#%7e"],
  ["http://h/^`{}|?^`{}|#^`{}|"],
  // Failures: Node throws TypeError [ERR_INVALID_URL]: Invalid URL.
  ["./x"],
  ["x", "not a url"],
  ["x", ""],
  ["http://"],
  ["http://a b/"],
  ["http://[::1/"],
  ["http://1.2.3.4.5/"],
  ["http://x:99999/"],
  ["https://ex%25ample.com/"],
  [""],
  ["//x"],
];

function observe(u) {
  return {
    href: u.href, origin: u.origin, protocol: u.protocol, username: u.username, password: u.password,
    host: u.host, hostname: u.hostname, port: u.port, pathname: u.pathname, search: u.search, hash: u.hash,
    searchParams: [...u.searchParams], string: String(u), json: JSON.stringify(u),
  };
}

function failure(e) {
  return {error: {name: e.name, code: e.code, message: e.message, input: e.input, base: e.base}};
}

function attempt(fn) {
  try {
    return fn();
  } catch (e) {
    return failure(e);
  }
}

// Cases that are not a plain (input, base) pair, each a function of the
// environment: {URL, URLSearchParams, url, nodeUrl} (url and nodeUrl are
// the "url" and "node:url" modules).
function extras(env) {
  const {URL, URLSearchParams, url} = env;
  const set = (href, prop, value) => attempt(() => { const u = new URL(href); u[prop] = value; return observe(u); });
  const params = (fn) => attempt(() => { const r = fn(); return r instanceof URLSearchParams ? {list: [...r], string: String(r), size: r.size} : r; });
  const cwdURL = url.pathToFileURL(process.cwd() + "/").href;
  const toFile = (p) => attempt(() => url.pathToFileURL(p).href.replace(cwdURL, "<cwd>/"));
  const toPath = (v) => attempt(() => url.fileURLToPath(v));
  return {
    "identity": () => ({
      globalURL: typeof URL === "function" && url.URL === URL && env.nodeUrl.URL === URL,
      globalParams: url.URLSearchParams === URLSearchParams && env.nodeUrl.URLSearchParams === URLSearchParams,
      functions: url.fileURLToPath === env.nodeUrl.fileURLToPath && url.pathToFileURL === env.nodeUrl.pathToFileURL,
    }),
    "base is a URL object": () => attempt(() => observe(new URL("../x.json", new URL("file:///srv/app/cfg/rollbridge.js")))),
    "chained resolution": () => attempt(() => new URL("c.json", new URL("./b/", new URL("./a/", "file:///srv/")).href).href),
    "instance": () => {
      const u = new URL("https://example.com/");
      return {instanceOf: u instanceof URL, tag: Object.prototype.toString.call(u), keys: Object.keys(u), name: URL.name, paramsName: URLSearchParams.name};
    },
    "canParse": () => [URL.canParse("./x"), URL.canParse("./x", "http://h/"), URL.canParse("http://h/"), URL.canParse("x", "bad base")],
    "URL.parse": () => [URL.parse("./x") === null, URL.parse("x", "http://h/a/b").href],
    "no arguments": () => attempt(() => new URL()),
    "set href": () => set("http://a/b", "href", "https://c/d?e=1"),
    "set href invalid": () => set("http://a/b", "href", "./relative"),
    "set protocol": () => set("http://a:443/b", "protocol", "https"),
    "set protocol special to non-special": () => set("http://a/b", "protocol", "foo"),
    "set protocol to file with port": () => set("http://a:81/b", "protocol", "file"),
    "set username": () => set("http://a/b", "username", "us er@x"),
    "set password on file": () => set("file:///b", "password", "pw"),
    "set host with port": () => set("http://a:1/b", "host", "c.example:8080"),
    "set host with empty port": () => set("http://a:1/b", "host", "c.example:"),
    "set host empty on special": () => set("http://a/b", "host", ""),
    "set hostname with colon": () => set("http://a/b", "hostname", "c:8080"),
    "set port": () => set("http://a/b", "port", "8080abc"),
    "set port default": () => set("http://a:1/b", "port", "80"),
    "set port out of range": () => set("http://a:1/b", "port", "70000"),
    "set port empty": () => set("http://a:1/b", "port", ""),
    "set pathname": () => set("http://a/b?c#d", "pathname", "x y/../z/%2e/"),
    "set pathname non-special": () => set("foo://a/b", "pathname", "rel"),
    "set pathname opaque": () => set("mailto:x", "pathname", "/y"),
    "set search": () => set("http://a/b#h", "search", "?q=1 2&r='"),
    "set search empty": () => set("http://a/b?q#h", "search", ""),
    "set hash": () => set("http://a/b", "hash", "#x y`"),
    "set hash empty on opaque path": () => set("sc:opaque  #h", "hash", ""),
    "searchParams follow search": () => attempt(() => {
      const u = new URL("http://a/?x=1");
      const p = u.searchParams;
      u.search = "?y=2&y=3";
      const afterSearch = [...p];
      u.href = "http://b/?z=4";
      return {afterSearch, afterHref: [...p], same: u.searchParams === p};
    }),
    "searchParams write the query": () => attempt(() => {
      const u = new URL("http://a/p?x=1#h");
      u.searchParams.append("name", "v a+l/u&e=\u00e9");
      u.searchParams.set("x", "2");
      const withParams = u.href;
      u.searchParams.delete("x");
      u.searchParams.delete("name");
      return {withParams, emptied: u.href, search: u.search};
    }),
    "params from string": () => params(() => new URLSearchParams("?a=1&b=x+y%20z&a=3&&c&=d&e=%zz")),
    "params from record": () => params(() => new URLSearchParams({b: "2", a: 1, c: null})),
    "params from pairs": () => params(() => new URLSearchParams([["a", "1"], ["b", "2"], new Set(["c", "3"])])),
    "params from params": () => params(() => new URLSearchParams(new URLSearchParams("x=1&y=2"))),
    "params bad tuple": () => params(() => new URLSearchParams([["a", "1", "2"]])),
    "params methods": () => params(() => {
      const p = new URLSearchParams("b=2&a=1&b=3&c=4");
      return {get: p.get("b"), missing: p.get("z"), all: p.getAll("b"), has: p.has("a"), hasValue: p.has("b", "3"), hasOther: p.has("b", "9"),
        keys: [...p.keys()], values: [...p.values()], entries: [...p.entries()]};
    }),
    "params sort and serialize": () => params(() => {
      const p = new URLSearchParams();
      p.append("z", "~!'()*-._ +&=%");
      p.append("\u00e9", "\ud83d\ude00");
      p.append("a", "2");
      p.append("a", "1");
      p.append("\uff21", "x");
      p.append("\ud83d\ude00", "y");
      p.sort();
      return p;
    }),
    "params set and delete": () => params(() => {
      const p = new URLSearchParams("a=1&b=2&a=3&a=4");
      p.set("a", "x");
      p.delete("b", "9");
      p.append("b", "3");
      p.delete("b", "2");
      return p;
    }),
    "params forEach": () => params(() => {
      const seen = [];
      new URLSearchParams("a=1&b=2").forEach(function (value, name, all) { seen.push([name, value, all.size, this.tag]); }, {tag: "t"});
      return seen;
    }),
    "params missing arguments": () => params(() => new URLSearchParams().append("a")),
    "fileURLToPath string": () => toPath("file:///srv/my%20app/%C3%A9.json"),
    "fileURLToPath URL": () => toPath(new URL("./.env", "file:///srv/app/rollbridge.js")),
    "fileURLToPath localhost": () => toPath("file://localhost/etc/hosts"),
    "fileURLToPath keeps trailing slash": () => toPath("file:///srv/app/"),
    "fileURLToPath decodes reserved": () => toPath("file:///a%3Fb%23c%25d"),
    "fileURLToPath encoded slash": () => toPath("file:///a%2Fb"),
    "fileURLToPath host": () => toPath("file://server/share"),
    "fileURLToPath scheme": () => toPath("https://example.com/x"),
    "fileURLToPath not a URL": () => toPath("./relative"),
    "fileURLToPath number": () => toPath(5),
    "fileURLToPath malformed": () => toPath("file:///a%E9"),
    "pathToFileURL special characters": () => toFile("/srv/my app/#1?%.js"),
    "pathToFileURL unsafe characters": () => toFile("/a~b[c]^d|e\\f\"g<h>i`j{k}l\tm"),
    "pathToFileURL non-ASCII": () => toFile("/caf\u00e9/\u65e5\u672c"),
    "pathToFileURL directory": () => toFile("/srv/app/"),
    "pathToFileURL dot segments": () => toFile("/srv/./app/../x"),
    "pathToFileURL relative": () => toFile("rel/x.json"),
    "pathToFileURL number": () => toFile(5),
    "pathToFileURL returns a URL": () => attempt(() => { const u = url.pathToFileURL("/srv/app/rollbridge.js"); return [u instanceof URL, new URL("./data.json", u).href]; }),
    "domainToASCII": () => [url.domainToASCII("espa\u00f1ol.com"), url.domainToASCII("EXAMPLE.com"), url.domainToASCII("xn--iny-zx5a.com")],
    "domainToUnicode": () => [url.domainToUnicode("xn--espaol-zwa.com"), url.domainToUnicode("example.com")],
  };
}

// probe runs every case and returns [{id, result}], in order.
export function probe(env) {
  const out = pairs.map((args) => ({
    id: JSON.stringify(args),
    result: attempt(() => observe(args.length > 1 ? new env.URL(args[0], args[1]) : new env.URL(args[0]))),
  }));
  for (const [id, fn] of Object.entries(extras(env))) {
    out.push({id, result: attempt(fn)});
  }
  return out;
}
