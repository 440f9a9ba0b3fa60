export default {proxy: {}, legacyTakeover: ["app"], processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
