export default {proces: [], helth: {}, proxy: {bogus: 1}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000, colour: "blue", health: {bogus: true}}]};
