package jsconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type urlGoldenCase struct {
	ID     string          `json:"id"`
	Result json.RawMessage `json:"result"`
}

// TestURLGolden runs testdata/url/probe.mjs inside a config, through the
// real loader, and compares every observation with what Node recorded in
// testdata/url/golden.json (re-record with `node testdata/url/generate.mjs`;
// this test does not need Node).
func TestURLGolden(t *testing.T) {
	probe, err := filepath.Abs(filepath.Join("..", "testdata", "url", "probe.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("..", "testdata", "url", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Node    string          `json:"node"`
		Results []urlGoldenCase `json:"results"`
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatalf("golden.json: %v", err)
	}
	pairs := 0
	for _, c := range golden.Results {
		if strings.HasPrefix(c.ID, "[") {
			pairs++
		}
	}
	if pairs < 40 {
		t.Fatalf("golden.json has %d (input, base) cases; want at least 40", pairs)
	}

	src := fmt.Sprintf(`import {probe} from %q;
import * as url from "url";
import * as nodeUrl from "node:url";
console.log(JSON.stringify(probe({URL, URLSearchParams, url, nodeUrl})));
export default {%s};
`, probe, validBody)
	p := writeConfig(t, t.TempDir(), "rollbridge.js", src)
	var stdout, stderr bytes.Buffer
	_, issues, err := Check(p, Options{Stdout: &stdout, Stderr: &stderr})
	if err != nil || len(issues) > 0 {
		t.Fatalf("load: %v %v (stderr %q)", err, issues, stderr.String())
	}
	var got []urlGoldenCase
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("probe output: %v\n%s", err, stdout.String())
	}
	if len(got) != len(golden.Results) {
		t.Fatalf("probe returned %d cases, golden.json has %d", len(got), len(golden.Results))
	}
	for i, want := range golden.Results {
		if got[i].ID != want.ID {
			t.Fatalf("case %d is %s, golden.json has %s: re-record golden.json", i, got[i].ID, want.ID)
		}
		var g, w any
		if err := json.Unmarshal(got[i].Result, &g); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want.Result, &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s\n got  %s\n Node %s", want.ID, got[i].Result, want.Result)
		}
	}
	t.Logf("%d cases (%d (input, base) pairs) match Node %s", len(got), pairs, golden.Node)
}

// The ESM idiom the issue was about: a file next to the config, reached
// with new URL("./.env", import.meta.url), from a directory whose name
// needs percent-encoding in a URL.
func TestURLRelativeToImportMeta(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my app #1 ~é")
	writeConfig(t, dir, ".env", "TOKEN=from-dotenv\n")
	writeConfig(t, dir, "shared/ports.json", `{"web": 18000}`)
	src := `import fs from "node:fs";
import {fileURLToPath, pathToFileURL} from "node:url";
const env = fs.readFileSync(new URL("./.env", import.meta.url), "utf8");
const ports = JSON.parse(fs.readFileSync(new URL("shared/ports.json", import.meta.url)));
const here = new URL(".", import.meta.url);
console.log(JSON.stringify({
  env,
  port: ports.web,
  dirURL: here.href,
  dirPath: fileURLToPath(here),
  sibling: fileURLToPath(new URL("../other/x.js", import.meta.url)),
  metaIsPathToFileURL: import.meta.url === pathToFileURL(import.meta.filename).href,
}));
export default {` + validBody + `};
`
	p := writeConfig(t, dir, "rollbridge.mjs", src)
	var stdout bytes.Buffer
	_, issues, err := Check(p, Options{Stdout: &stdout})
	if err != nil || len(issues) > 0 {
		t.Fatalf("load: %v %v", err, issues)
	}
	var got struct {
		Env                 string `json:"env"`
		Port                int    `json:"port"`
		DirURL              string `json:"dirURL"`
		DirPath             string `json:"dirPath"`
		Sibling             string `json:"sibling"`
		MetaIsPathToFileURL bool   `json:"metaIsPathToFileURL"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	parent := filepath.Dir(dir)
	want := map[string][2]string{
		"env":     {got.Env, "TOKEN=from-dotenv\n"},
		"dirURL":  {got.DirURL, fileURL(parent) + "/my%20app%20%231%20%7E%C3%A9/"},
		"dirPath": {got.DirPath, dir + "/"},
		"sibling": {got.Sibling, filepath.Join(parent, "other", "x.js")},
	}
	for name, gw := range want {
		if gw[0] != gw[1] {
			t.Errorf("%s = %q, want %q", name, gw[0], gw[1])
		}
	}
	if got.Port != 18000 || !got.MetaIsPathToFileURL {
		t.Errorf("port %d, import.meta.url is pathToFileURL(import.meta.filename): %v", got.Port, got.MetaIsPathToFileURL)
	}
}
