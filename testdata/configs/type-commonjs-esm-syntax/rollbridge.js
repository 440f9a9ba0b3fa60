// Node refuses ESM under "type": "commonjs"; rollbridge accepts both syntaxes in a .js file.
export default {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
