export default {proxy: {port: 80.5}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
