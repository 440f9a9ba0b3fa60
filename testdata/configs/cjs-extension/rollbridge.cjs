module.exports = {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
