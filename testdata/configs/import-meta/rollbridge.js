import {fileURLToPath} from "url";
const ok = fileURLToPath(import.meta.url) === import.meta.filename &&
  import.meta.url.startsWith("file:///") && !import.meta.url.includes("?") &&
  import.meta.dirname + "/rollbridge.js" === import.meta.filename;
export default {application: ok ? "meta-ok" : "meta-bad", proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
