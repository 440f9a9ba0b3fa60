export default {
  application: 42,
  control: {path: 7, mode: "999", owner: -1, group: ""},
  proxy: {host: 1, port: "8182", drainTimeoutMs: "x"},
  releaseRetention: {keep: -1},
  statePath: 9,
  legacyTakeover: {},
  processes: [
    {stopSignal: "BOGUS", replicas: 0, port: -1, policy: "nope", outputLines: 0, nonBlockingDrain: "y", memory: {}, lifecycle: 5, id: "a#b", health: true, gracefulStopMs: "z", env: {X: 1}, deployStrategy: "q", cwd: 3, command: 4, restart: {backoffFactor: 0}, restartDelayMs: "r"},
    "oops",
    {id: "web", policy: "proxied", command: "x"},
    {id: "web", policy: "proxied", command: "y", port: 1}
  ]
}
