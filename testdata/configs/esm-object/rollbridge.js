// A plain ES module config with a default export object.
export default {
  application: "shop",
  proxy: {port: 8182},
  processes: [
    {id: "web", policy: "proxied", command: "node server.js --port {{port}}", port: {from: 18000, to: 18099}},
    {id: "worker", command: "node worker.js", replicas: 2}
  ]
};
