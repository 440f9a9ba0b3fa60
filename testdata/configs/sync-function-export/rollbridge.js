export default function () {
  return {proxy: {port: 9000}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
}
