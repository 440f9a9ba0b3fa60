export default {
  control: {mode: "660", group: "deploy"},
  proxy: {host: "0.0.0.0", port: 8182, drainTimeoutMs: 30000},
  releaseRetention: {keep: 5},
  statePath: "/var/lib/rollbridge/ticket-server.state.json",
  legacyTakeover: {screens: ["ticket-server"], processes: [{includes: ["/home/dev/ticket-server/", "velocious server"]}]},
  processes: [
    {id: "beacon", policy: "service", command: "npx velocious beacon", port: 7330},
    {id: "jobs-main", policy: "service", deployStrategy: "handoff", command: "npx velocious background-jobs-main", port: {from: 7331, to: 7399}, env: {VELOCIOUS_BEACON_PORT: "{{ports.beacon}}"}},
    {id: "worker", policy: "companion", command: "npx velocious background-jobs-worker", replicas: 2, nonBlockingDrain: true, stopSignal: "SIGINT", gracefulStopMs: "indefinite",
      lifecycle: {quietCommand: "kill -TSTP -$ROLLBRIDGE_PID", drainTimeoutMs: 60000},
      memory: {limitBytes: 536870912}, restart: {maxRestarts: 5, windowMs: 60000, backoffFactor: 2, maxDelayMs: 30000}},
    {id: "cron", policy: "singleton", command: "npx velocious cron", outputLines: 200},
    {id: "web", policy: "proxied", cwd: "{{releasePath}}/backend", command: "npx velocious server --port {{port}}", port: {from: 18182, to: 18299}, health: {path: "/health", startDelayMs: 1000}, env: {NODE_ENV: "production"}}
  ]
}
