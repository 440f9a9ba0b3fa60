export default {
  control: {path: "/run/app/rollbridge.sock", mode: "0o660", owner: "deploy", group: 0},
  proxy: {},
  processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]
};
