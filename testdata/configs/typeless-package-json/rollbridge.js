import os from "os";
export default {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000, env: {PLATFORM: os.platform()}}]};
