export default {
  proxy: {forceStopTimeoutMs: 3000},
  legacyTakeover: {
    forceStopTimeoutMs: -1,
    screens: ["app", "", 7],
    processes: [
      "nope",
      {includes: "velocious"},
      {includes: ["", 3]},
      {includes: ["node", "server.js"], name: 5},
      {}
    ]
  },
  processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]
};
