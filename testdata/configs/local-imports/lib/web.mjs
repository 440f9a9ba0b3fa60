export function webProcess(range) {
  return {id: "web", policy: "proxied", command: "node web.js", port: range};
}
