const path = require("node:path");
module.exports = {
  application: __filename === path.join(__dirname, "rollbridge.cjs") ? "cjs-paths-ok" : "cjs-paths-bad",
  proxy: {},
  processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]
};
