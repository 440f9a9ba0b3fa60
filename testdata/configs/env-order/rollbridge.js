// env keeps JavaScript own-key order: integer-like keys first, ascending.
export default {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000, env: {b: 1, 10: 2, a: 3, 2: 4}}]};
