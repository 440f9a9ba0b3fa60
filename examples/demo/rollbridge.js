// The config of `make demo`: one web app behind the proxy on a free
// loopback port, with the control socket in the demo's scratch directory.
const dir = process.env.ROLLBRIDGE_DEMO_DIR;
if (!dir) throw new Error("Run the demo with `make demo` (it sets ROLLBRIDGE_DEMO_DIR).");

export default {
  application: "demo",
  control: {path: `${dir}/rollbridge.sock`},
  proxy: {host: "127.0.0.1", port: 0, drainTimeoutMs: 10000},
  processes: [
    {
      id: "web",
      policy: "proxied",
      command: "exec ./demo serve",
      port: {from: 18600, to: 18699},
      health: {path: "/ping", intervalMs: 50}
    }
  ]
};
