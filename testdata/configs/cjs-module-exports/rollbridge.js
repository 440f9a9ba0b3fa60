// CommonJS with module.exports.
const path = require("path");
module.exports = {
  application: path.basename(__dirname),
  proxy: {},
  processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]
};
