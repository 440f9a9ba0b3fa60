// Every per-process type check, in the validator's alphabetical order.
export default {
  proxy: {},
  processes: [
    {
      command: ["node"], cwd: 1, deployStrategy: "Handoff", env: "A=1", gracefulStopMs: "Indefinite",
      health: {intervalMs: "250", path: 9, startDelayMs: "0", timeoutMs: null},
      id: 12, lifecycle: {drainTimeoutMs: "5", quietCommand: 1, drainCommand: false, stopCommand: {}},
      memory: {limitBytes: "1G", warnBytes: "1", checkIntervalMs: "5"},
      nonBlockingDrain: 1, outputLines: "50", policy: 3, port: "18000", replicas: "2",
      restart: {maxRestarts: "5", windowMs: "1", backoffFactor: "2", maxDelayMs: "3"},
      restartDelayMs: "1000", stopSignal: 15
    },
    {id: "web", policy: "proxied", command: "x", port: 18000}
  ]
};
