export default {
  proxy: {},
  legacyTakeover: {forceStopTimeoutMs: "10", screens: "app", processes: {includes: ["x"]}},
  processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]
};
