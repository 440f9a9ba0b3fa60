export default {proxy: {}, processes: [
  {id: "web", policy: "proxied", command: "x", port: 18000, stopSignal: "SIGSTOP"},
  {id: "a", command: "x", stopSignal: "sigint"},
  {id: "b", command: "x", stopSignal: "INT"},
  {id: "c", command: "x", stopSignal: ""},
  {id: "d", command: "x", stopSignal: "SIGRTMIN"},
  {id: "e", command: "x", stopSignal: "SIGPWR"}
]};
