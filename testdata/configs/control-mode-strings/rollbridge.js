export default {control: {mode: "0O660"}, proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
