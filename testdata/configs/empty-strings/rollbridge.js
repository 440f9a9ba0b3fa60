// command "" and application "" are accepted; cwd "" means the release path.
export default {application: "", proxy: {}, processes: [{id: "web", policy: "proxied", command: "", cwd: "", port: 18000}]};
