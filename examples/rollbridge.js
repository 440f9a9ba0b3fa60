// A small app: one web process behind the stable proxy port and two job
// workers that finish their current job before they stop.
export default {
  application: "shop",
  proxy: {port: 8182, drainTimeoutMs: 30000},
  releaseRetention: {keep: 5},
  processes: [
    {
      id: "web",
      policy: "proxied",
      command: "node server.js --port {{port}}",
      port: {from: 18000, to: 18099},
      health: {path: "/ping", intervalMs: 250},
      env: {NODE_ENV: "production"}
    },
    {
      id: "worker",
      policy: "companion",
      command: "node worker.js",
      replicas: 2,
      stopSignal: "SIGINT",
      gracefulStopMs: 60000,
      env: {NODE_ENV: "production", WORKER_NAME: "{{processId}}-{{replicaIndex}}", RELEASE: "{{releaseId}}"}
    }
  ]
};
