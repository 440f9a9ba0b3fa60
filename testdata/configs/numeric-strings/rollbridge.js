// Numeric strings are never converted.
export default {proxy: {port: "8182", healthTimeoutMs: "1000"}, releaseRetention: {keep: "3"}, processes: [{id: "web", policy: "proxied", command: "x", port: {from: "18000", to: "18099"}, outputLines: "100"}]};
