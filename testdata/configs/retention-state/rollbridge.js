export default {proxy: {}, releaseRetention: {keep: 2.5, maxAgeMs: -1}, statePath: "", processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
