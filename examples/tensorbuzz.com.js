// TensorBuzz backend on one host: nginx → 127.0.0.1:4500 → the active web release.
//
// Start order on every deploy: the daemon-wide services (beacon, then
// background-jobs-main) keep running across deploys; each release starts its
// background-jobs-worker, then its web process, health-checks web on /ping,
// switches traffic and drains the previous release for up to 60 s.

// A shell prefix that blocks until the given processes accept TCP
// connections, so a process never starts talking to a broker that is not up.
const waitFor = (...ids) =>
  ids
    .map((id) => `until node -e "require('net').connect({{ports.${id}}}, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))"; do sleep 0.2; done`)
    .join(" && ");

const backend = {
  cwd: "{{releasePath}}/backend",
  env: {
    NODE_ENV: "production",
    VELOCIOUS_ENV: "production",
    VELOCIOUS_BEACON_PORT: "{{ports.beacon}}",
    VELOCIOUS_BACKGROUND_JOBS_PORT: "{{ports.background-jobs-main}}"
  }
};

export default {
  application: "tensorbuzz",
  control: {path: "/tmp/rollbridge-tensorbuzz.sock"},
  proxy: {
    host: "127.0.0.1",
    port: 4500,
    healthPath: "/ping",
    healthTimeoutMs: 30000,
    drainTimeoutMs: 60000,
    forceStopTimeoutMs: 10000
  },
  processes: [
    {
      ...backend,
      id: "beacon",
      policy: "service",
      command: "npx velocious beacon --host 127.0.0.1 --port {{port}}",
      port: 7330
    },
    {
      ...backend,
      id: "background-jobs-main",
      policy: "service",
      command: `${waitFor("beacon")} && exec npx velocious background-jobs-main --host 127.0.0.1 --port {{port}}`,
      port: 7331
    },
    {
      ...backend,
      id: "background-jobs-worker",
      policy: "companion",
      command: `${waitFor("beacon", "background-jobs-main")} && exec npx velocious background-jobs-worker`,
      gracefulStopMs: 60000
    },
    {
      ...backend,
      id: "web",
      policy: "proxied",
      command: "npx velocious server --host 127.0.0.1 --port {{port}}",
      port: {from: 14500, to: 14599},
      health: {intervalMs: 500}
    }
  ]
};
