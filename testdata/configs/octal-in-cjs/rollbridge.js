// Sloppy-mode CommonJS accepts a legacy octal literal.
module.exports = {control: {mode: 0660, group: 1000}, proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
