export default {proxy: {port: -1}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
