// null means "unset" for sections and optional strings (Go: also cwd and lifecycle
// commands); env entries must be strings; health: null disables the check.
export default {
  application: null,
  control: null,
  releaseRetention: null,
  statePath: null,
  legacyTakeover: null,
  proxy: {host: null, port: null},
  processes: [
    {id: "web", policy: "proxied", command: "x", port: 18000, cwd: null, health: null,
     lifecycle: {quietCommand: null, drainCommand: null, stopCommand: null}, memory: null, restart: null,
     env: {A: "1", B: null, C: undefined, D: 4}},
    {id: "job", command: "y", health: false, stopSignal: null, nonBlockingDrain: null, replicas: null}
  ]
};
