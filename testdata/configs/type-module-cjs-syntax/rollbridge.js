// Node refuses CommonJS under "type": "module"; rollbridge accepts both syntaxes in a .js file.
module.exports = {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
