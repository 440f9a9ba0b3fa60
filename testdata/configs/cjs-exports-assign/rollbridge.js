// Properties assigned to `exports` form the default export.
exports.application = "assigned";
exports.proxy = {host: "::1"};
exports.processes = [{id: "web", policy: "proxied", command: "x", port: 18000}];
