// The reference does not await a promise export; rollbridge (Go) does.
export default Promise.resolve({proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port: 18000}]});
