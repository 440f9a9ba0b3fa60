export default {
  proxy: {forceStopTimeoutMs: 15000},
  processes: [
    {id: "web", policy: "proxied", command: "x", port: {from: 18000, to: 18099}, health: {path: "/health", startDelayMs: 1000, intervalMs: 100, timeoutMs: 20000}},
    {id: "worker", command: "y", replicas: 3, nonBlockingDrain: true, stopSignal: "SIGINT", gracefulStopMs: "indefinite",
     lifecycle: {quietCommand: "kill -TSTP -$ROLLBRIDGE_PID", drainCommand: "wait-idle", drainTimeoutMs: 30000},
     memory: {limitBytes: 536870912, warnBytes: 402653184, checkIntervalMs: 1000},
     restart: {maxRestarts: 0, windowMs: 60000, backoffFactor: 2, maxDelayMs: 30000}, outputLines: 200, restartDelayMs: 250},
    {id: "beacon", policy: "service", command: "z", port: 7330, stopSignal: "SIGKILL"},
    {id: "jobs-main", policy: "service", deployStrategy: "handoff", command: "q", port: {from: 7331, to: 7399}},
    {id: "cron", policy: "singleton", command: "c", lifecycle: {stopCommand: "stop-cron"}, stopSignal: "SIGTERM"}
  ]
};
