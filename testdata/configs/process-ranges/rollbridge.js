// Range rules after the types pass.
export default {
  proxy: {forceStopTimeoutMs: 2500},
  processes: [
    {
      id: "worker", command: "x", gracefulStopMs: -1, health: {startDelayMs: -10},
      lifecycle: {drainTimeoutMs: -1, drainCommand: ""},
      memory: {limitBytes: 1.5, warnBytes: -1, checkIntervalMs: 0},
      outputLines: 0.5, replicas: 0,
      restart: {maxRestarts: 1.5, windowMs: -1, backoffFactor: 0.5, maxDelayMs: -1}
    },
    {id: "jobs", command: "x", restart: {maxRestarts: Infinity}, memory: {limitBytes: 0}},
    {id: "cron", command: "x", restart: {maxRestarts: -1}, lifecycle: {drainCommand: "drain"}},
    {id: "web", policy: "proxied", command: "x", port: 18000}
  ]
};
