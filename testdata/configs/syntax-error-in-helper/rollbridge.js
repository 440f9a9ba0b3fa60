// The entry is fine; the helper it imports has a syntax error, which must
// be reported with the helper's own path, line and column.
import name from "./lib/name.js";

export default {
  application: name,
  processes: [{id: "web", policy: "proxied", command: "node server.js", port: 18000}]
};
