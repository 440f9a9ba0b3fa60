package jsconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/evanw/esbuild/pkg/api"
)

// The config's module graph is bundled by esbuild into one script that
// goja can run: ES modules become plain code (top-level await kept, the
// script is run inside an async function), CommonJS modules keep their own
// function scope, and Node built-ins are bound to the Go implementations
// registered with the runtime. Every local file is read again on each load.

const (
	entryNamespace   = "rollbridge-entry"
	builtinNamespace = "rollbridge-builtin"
	// localNamespace holds the config's own files. Loading them outside
	// esbuild's "file" namespace means package.json "type" does not decide
	// their module kind: syntax does
	// (docs/config.md#10-differences-from-the-nodejs-rollbridge, row 13).
	localNamespace = "rollbridge-local"
	// moduleHook is the global the entry calls with the config's namespace.
	moduleHook = "__rollbridgeModule"
	// builtinHook is the global that returns a built-in module's exports.
	builtinHook = "__rollbridgeBuiltin"
)

// nodeBuiltins lists the names Node resolves as core modules; any other
// bare specifier is looked up in node_modules.
var nodeBuiltins = []string{"assert", "assert/strict", "async_hooks", "buffer", "child_process", "cluster", "console", "constants", "crypto", "dgram", "diagnostics_channel", "dns", "dns/promises", "domain", "events", "fs", "fs/promises", "http", "http2", "https", "inspector", "module", "net", "os", "path", "path/posix", "path/win32", "perf_hooks", "process", "punycode", "querystring", "readline", "readline/promises", "repl", "stream", "stream/promises", "string_decoder", "sys", "timers", "timers/promises", "tls", "trace_events", "tty", "url", "util", "util/types", "v8", "vm", "wasi", "worker_threads", "zlib"}

var builtinFilter = func() string {
	names := make([]string, len(nodeBuiltins))
	for i, n := range nodeBuiltins {
		names[i] = regexp.QuoteMeta(n)
	}
	return `^(node:)?(` + strings.Join(names, "|") + `)$|^node:`
}()

var couldNotResolve = regexp.MustCompile(`^Could not resolve "(.*)"`)

// bundled is the script for a config and the per-file globals it needs.
type bundled struct {
	code string
	// globals binds the names that stand for __dirname and __filename in
	// each CommonJS file; ES module files get none, so using them there is
	// a ReferenceError, as in Node.
	globals map[string]string
}

// bundler builds one config's module graph.
type bundler struct {
	abs   string
	mu    sync.Mutex
	files []string // local JS files in load order; the index names their globals
}

// bundleConfig returns the script for the config at abs.
func bundleConfig(abs string) (*bundled, error) {
	if strings.HasSuffix(abs, ".json") {
		return nil, &LoadError{Message: fmt.Sprintf(`Module "%s" needs an import attribute of type "json"`, fileURL(abs))}
	}
	b := &bundler{abs: abs}
	res := api.Build(api.BuildOptions{
		EntryPoints:   []string{"rollbridge:entry"},
		Bundle:        true,
		Write:         false,
		Format:        api.FormatESModule,
		Platform:      api.PlatformNode,
		Target:        api.ES2020,
		Supported:     map[string]bool{"top-level-await": true},
		Charset:       api.CharsetUTF8,
		LogLevel:      api.LogLevelSilent,
		AbsWorkingDir: filepath.Dir(abs),
		Metafile:      true,
		Plugins:       []api.Plugin{b.plugin()},
	})
	if len(res.Errors) > 0 {
		return nil, buildError(res.Errors[0], abs)
	}
	if len(res.OutputFiles) != 1 {
		return nil, &LoadError{Message: "Config module " + abs + " produced no code"}
	}
	globals, err := b.checkModules(res.Metafile)
	if err != nil {
		return nil, err
	}
	return &bundled{code: string(res.OutputFiles[0].Contents), globals: globals}, nil
}

func (b *bundler) plugin() api.Plugin {
	abs := b.abs
	return api.Plugin{Name: "rollbridge-config", Setup: func(pb api.PluginBuild) {
		pb.OnResolve(api.OnResolveOptions{Filter: `^rollbridge:entry$`}, func(a api.OnResolveArgs) (api.OnResolveResult, error) {
			if a.Kind != api.ResolveEntryPoint {
				return api.OnResolveResult{}, nil
			}
			// An .mjs entry makes esbuild import CommonJS the Node way: the
			// default export is module.exports, whatever __esModule says.
			return api.OnResolveResult{Path: "entry.mjs", Namespace: entryNamespace}, nil
		})
		pb.OnLoad(api.OnLoadOptions{Filter: `.*`, Namespace: entryNamespace}, func(api.OnLoadArgs) (api.OnLoadResult, error) {
			src := "import * as config from " + strconv.Quote(abs) + ";\n" + moduleHook + "(config);\n"
			return api.OnLoadResult{Contents: &src, ResolveDir: filepath.Dir(abs), Loader: api.LoaderJS}, nil
		})
		pb.OnResolve(api.OnResolveOptions{Filter: builtinFilter}, func(a api.OnResolveArgs) (api.OnResolveResult, error) {
			name := strings.TrimPrefix(a.Path, "node:")
			if !supportedBuiltin(name) {
				return api.OnResolveResult{Errors: []api.Message{{Text: unsupportedBuiltinMessage(a.Path)}}}, nil
			}
			return api.OnResolveResult{Path: name, Namespace: builtinNamespace}, nil
		})
		pb.OnLoad(api.OnLoadOptions{Filter: `.*`, Namespace: builtinNamespace}, func(a api.OnLoadArgs) (api.OnLoadResult, error) {
			src := "module.exports = " + builtinHook + "(" + strconv.Quote(a.Path) + ");\n"
			return api.OnLoadResult{Contents: &src, Loader: api.LoaderJS}, nil
		})
		pb.OnResolve(api.OnResolveOptions{Filter: `^(\.\.?(/|$)|/)`}, func(a api.OnResolveArgs) (api.OnResolveResult, error) {
			if a.PluginData == resolvingLocal {
				return api.OnResolveResult{}, nil
			}
			r := pb.Resolve(a.Path, api.ResolveOptions{Importer: a.Importer, ResolveDir: a.ResolveDir, Kind: a.Kind, PluginData: resolvingLocal, With: a.With})
			if len(r.Errors) > 0 {
				return api.OnResolveResult{Errors: r.Errors}, nil
			}
			if r.Namespace != "file" {
				return api.OnResolveResult{Path: r.Path, Namespace: r.Namespace, External: r.External}, nil
			}
			return api.OnResolveResult{Path: r.Path, Namespace: localNamespace}, nil
		})
		pb.OnLoad(api.OnLoadOptions{Filter: `.*`, Namespace: localNamespace}, func(a api.OnLoadArgs) (api.OnLoadResult, error) {
			return b.loadLocalModule(a.Path)
		})
	}}
}

// resolvingLocal marks the nested resolve of a local path, so the plugin
// lets esbuild's own resolver answer it.
const resolvingLocal = "rollbridge-resolving-local"

// fileGlobal names the global that stands for __dirname or __filename in
// local file i.
func fileGlobal(kind string, i int) string { return "__rollbridge" + kind + strconv.Itoa(i) }

// loadLocalModule reads one local file (fresh on every load). JSON is
// handed to esbuild's JSON loader. JS gets its per-file values bound:
// import.meta.url/dirname/filename as literals, __dirname and __filename as
// per-file globals (esbuild's define only replaces free identifiers, so a
// config that declares its own __dirname keeps it). A .mjs file is always
// an ES module, even without import or export syntax.
func (b *bundler) loadLocalModule(p string) (api.OnLoadResult, error) {
	data, err := readFileNode(p)
	if err != nil {
		return api.OnLoadResult{Errors: []api.Message{{Text: err.Error()}}}, nil
	}
	dir := filepath.Dir(p)
	if strings.HasSuffix(p, ".json") {
		contents := string(data)
		return api.OnLoadResult{Contents: &contents, Loader: api.LoaderJSON, ResolveDir: dir}, nil
	}
	b.mu.Lock()
	i := len(b.files)
	b.files = append(b.files, p)
	b.mu.Unlock()
	if !usesFileValues(data) {
		// Nothing to bind: skip a second esbuild pass (about 2 ms of a
		// command's start-up).
		code := string(data)
		if strings.HasSuffix(p, ".mjs") {
			code += "\nexport {};\n"
		}
		return api.OnLoadResult{Contents: &code, Loader: api.LoaderJS, ResolveDir: dir}, nil
	}
	url := fileURL(p)
	r := api.Transform(string(data), api.TransformOptions{
		Sourcefile: p,
		Loader:     api.LoaderJS,
		Supported:  map[string]bool{"top-level-await": true},
		Charset:    api.CharsetUTF8,
		LogLevel:   api.LogLevelSilent,
		Define: map[string]string{
			"import.meta.url":      strconv.Quote(url),
			"import.meta.dirname":  strconv.Quote(dir),
			"import.meta.filename": strconv.Quote(p),
			"import.meta":          fmt.Sprintf(`{"url":%q,"dirname":%q,"filename":%q}`, url, dir, p),
			"__dirname":            fileGlobal("Dirname", i),
			"__filename":           fileGlobal("Filename", i),
		},
	})
	if len(r.Errors) > 0 {
		return api.OnLoadResult{Errors: r.Errors}, nil
	}
	code := string(r.Code)
	if strings.HasSuffix(p, ".mjs") {
		code += "\nexport {};\n"
	}
	return api.OnLoadResult{Contents: &code, Loader: api.LoaderJS, ResolveDir: dir}, nil
}

// usesFileValues reports whether a file's text may refer to import.meta,
// __dirname or __filename, the per-file values loadLocalModule binds. It
// errs towards yes: any "meta" (import . meta may be spaced out or have
// comments between its parts) and any \u escape (an identifier may be
// spelled with escapes) count.
func usesFileValues(src []byte) bool {
	for _, s := range [][]byte{[]byte("meta"), []byte("__dirname"), []byte("__filename"), []byte(`\u`)} {
		if bytes.Contains(src, s) {
			return true
		}
	}
	return false
}

// checkModules applies Node's module-kind rules that only the finished
// graph reveals, using esbuild's metafile: a .cjs file cannot use ES module
// syntax, an ES module cannot call require(), and only CommonJS files get
// __dirname and __filename.
func (b *bundler) checkModules(metafile string) (map[string]string, error) {
	var meta struct {
		Inputs map[string]struct {
			Format  string `json:"format"`
			Imports []struct {
				Kind string `json:"kind"`
			} `json:"imports"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal([]byte(metafile), &meta); err != nil {
		return nil, &LoadError{Message: "Config module " + b.abs + " could not be analysed: " + err.Error()}
	}
	formats := map[string]string{}
	for name, in := range meta.Inputs {
		file, local := strings.CutPrefix(name, localNamespace+":")
		if !local {
			continue
		}
		formats[file] = in.Format
		if in.Format != "esm" {
			continue
		}
		if strings.HasSuffix(file, ".cjs") {
			return nil, &LoadError{Message: file + ": a .cjs file is always CommonJS, so it cannot use import or export; use require() and module.exports, or rename it to .mjs"}
		}
		for _, imp := range in.Imports {
			if imp.Kind == "require-call" || imp.Kind == "require-resolve" {
				return nil, &LoadError{Message: "require is not defined in ES module scope, you can use import instead"}
			}
		}
	}
	globals := map[string]string{}
	for i, file := range b.files {
		if formats[file] != "esm" {
			globals[fileGlobal("Dirname", i)] = filepath.Dir(file)
			globals[fileGlobal("Filename", i)] = file
		}
	}
	return globals, nil
}

// buildError turns esbuild's first error into a load error that names the
// file and position, or Node's wording for a module that cannot be found.
func buildError(m api.Message, abs string) error {
	if sub := couldNotResolve.FindStringSubmatch(m.Text); sub != nil {
		spec := sub[1]
		importer := abs
		if m.Location != nil && m.Location.File != "" {
			importer = strings.TrimPrefix(m.Location.File, localNamespace+":")
			if !filepath.IsAbs(importer) {
				importer = filepath.Join(filepath.Dir(abs), importer)
			}
		}
		if m.Location != nil && strings.Contains(m.Location.LineText, "require(") {
			// Node's CommonJS wording, with the requiring file as the stack.
			return &LoadError{Message: fmt.Sprintf("Cannot find module '%s'\nRequire stack:\n- %s", spec, importer)}
		}
		if strings.HasPrefix(spec, ".") || strings.HasPrefix(spec, "/") {
			target := spec
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(importer), spec)
			}
			return &LoadError{Message: fmt.Sprintf("Cannot find module '%s' imported from %s", target, importer)}
		}
		return &LoadError{Message: fmt.Sprintf("Cannot find package '%s' imported from %s", spec, importer)}
	}
	if m.Location == nil || m.Location.File == "" {
		return &LoadError{Message: m.Text}
	}
	file := strings.TrimPrefix(m.Location.File, localNamespace+":")
	if !filepath.IsAbs(file) {
		file = filepath.Join(filepath.Dir(abs), file) // esbuild reports paths relative to the config's directory
	}
	return &LoadError{Message: fmt.Sprintf("%s:%d:%d: %s", file, m.Location.Line, m.Location.Column+1, m.Text)}
}

// supportedBuiltins are the Node core modules configs may import.
var supportedBuiltins = []string{"buffer", "child_process", "console", "fs", "os", "path", "path/posix", "process", "url", "util"}

func supportedBuiltin(name string) bool {
	i := sort.SearchStrings(supportedBuiltins, name)
	return i < len(supportedBuiltins) && supportedBuiltins[i] == name
}

func unsupportedBuiltinMessage(spec string) string {
	return fmt.Sprintf(`The Node.js module "%s" is not available in rollbridge configs; available built-ins: %s.`, spec, strings.Join(supportedBuiltins, ", "))
}

// fileURL is url.pathToFileURL(p).href for an absolute POSIX path, the
// value Node gives import.meta.url.
func fileURL(p string) string {
	u, ok := parseWHATWG("file://"+encodePathChars(p), nil)
	if !ok {
		return "file://" + encodePathChars(p)
	}
	return u.href()
}
