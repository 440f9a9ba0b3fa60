export default {proxy: {}, releaseRetention: 5, statePath: null, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
