console.log("loading config for %s", "console-output");
console.error("this goes to stderr");
export default {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]};
