// Fixed ports, ranges, and the Go checks for ports that can never bind.
export default {
  proxy: {},
  processes: [
    {id: "a", command: "x", port: NaN},
    {id: "b", command: "x", port: true},
    {id: "c", command: "x", port: {from: 5, to: 4}},
    {id: "d", command: "x", port: 70000},
    {id: "e", command: "x", port: 1.5},
    {id: "f", command: "x", port: {from: 1.5, to: 10}},
    {id: "g", command: "x", port: {from: 70000}},
    {id: "h", command: "x", port: {from: "1", to: -1}},
    {id: "i", command: "x", port: [18000]},
    {id: "web", policy: "proxied", command: "x", port: {from: 65000, to: 70000.5}},
    {id: "eph", command: "x", port: {}},
    {id: "zero", command: "x", port: 0}
  ]
};
