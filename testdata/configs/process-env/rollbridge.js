export default {
  application: process.env.ROLLBRIDGE_GOLDEN_UNSET_VARIABLE ?? "env-default",
  proxy: {port: Number(process.env.ROLLBRIDGE_GOLDEN_UNSET_PORT ?? 8300)},
  processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]
};
