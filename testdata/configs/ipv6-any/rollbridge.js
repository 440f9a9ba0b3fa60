export default {proxy: {host: "::"}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}, {id: "a", command: "y"}, {id: "b", command: "z"}]};
