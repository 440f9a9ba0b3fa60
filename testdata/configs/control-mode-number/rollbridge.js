// The decimal number 660 is not a mode (660 > 0o777).
export default {control: {mode: 660, owner: 1.5, group: true}, proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
