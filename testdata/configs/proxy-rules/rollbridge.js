// proxy field types, the negative forceStopTimeoutMs (Go: reported once) and
// the proxy.port range (Go: must be a port number).
export default {
  proxy: {host: "0.0.0.0", drainTimeoutMs: NaN, forceStopTimeoutMs: -5, healthPath: 7, healthTimeoutMs: Infinity, port: 70000, upstreamHost: false},
  legacyTakeover: {screens: ["old"]},
  processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]
};
