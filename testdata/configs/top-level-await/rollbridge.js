const os = await import("node:os");
const delay = await new Promise((resolve) => setTimeout(() => resolve(5), 5));
export default {
  application: os.default.platform() + "-" + delay,
  proxy: {},
  processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]
};
