export default {
  proxy: {},
  processes: [
    {id: "web", policy: "proxied", command: "x", port: 18000, replicas: 2, nonBlockingDrain: true},
    {id: "web", command: "x"},
    {id: "web", command: "x"},
    {id: "a#1#2", command: "x"},
    {id: "svc", policy: "service", command: "x", replicas: 3},
    {id: "comp", policy: "companion", command: "x", port: 19000, replicas: 2},
    {id: "h1", policy: "companion", deployStrategy: "handoff", command: "x"},
    {id: "h2", policy: "service", deployStrategy: "handoff", command: "x"},
    {id: "h3", policy: "service", deployStrategy: "handoff", command: "x", port: 7331},
    {id: "h4", policy: "service", deployStrategy: "handoff", command: "x", port: {from: 7400, to: 7400}},
    {id: "stopper", command: "x", stopSignal: "SIGINT", lifecycle: {stopCommand: "stop-it"}},
    {id: "stopper-ok", command: "x", stopSignal: "SIGINT", lifecycle: {stopCommand: ""}}
  ]
};
