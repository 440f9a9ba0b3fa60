// A range above 65535 or with a fractional end deploys (scanning stops at 65535).
export default {proxy: {}, processes: [
  {id: "web", policy: "proxied", command: "x", port: {from: 65500, to: 70000.5}},
  {id: "side", command: "x", port: {from: 20000}},
  {id: "eph", command: "x", port: {}}
]};
