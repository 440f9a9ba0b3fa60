export default {proxy: {}, processes: [{id: "web", policy: "proxied", command: "node server.js", port: 18000, health: false}]};
