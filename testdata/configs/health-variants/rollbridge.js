export default {proxy: {healthPath: "/up", healthTimeoutMs: 5000}, processes: [
  {id: "web", policy: "proxied", command: "x", port: 18000, health: "yes"},
  {id: "a", command: "x", health: [1]},
  {id: "b", command: "x", health: 1}
]};
