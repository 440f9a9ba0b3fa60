// For a CommonJS config the default export is module.exports itself, even
// when it carries a transpiler's __esModule marker (Node's import() rule).
exports.__esModule = true;
exports.default = {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
