// Records golden.json: what Node prints for every case in probe.mjs.
// Re-record with: node testdata/url/generate.mjs
import {writeFileSync} from "node:fs";
import * as url from "url";
import * as nodeUrl from "node:url";
import {probe} from "./probe.mjs";

const results = probe({URL, URLSearchParams, url, nodeUrl});
const lines = results.map((r) => JSON.stringify(r));
writeFileSync(new URL("./golden.json", import.meta.url),
  `{"node": ${JSON.stringify(process.version)}, "results": [\n${lines.join(",\n")}\n]}\n`);
console.log(`golden.json: ${results.length} cases recorded with Node ${process.version}`);
