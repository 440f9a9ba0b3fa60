// Go: an empty id is rejected; the proxied process is then "(unnamed)".
export default {proxy: {}, processes: [{id: "", policy: "proxied", command: "x"}, {policy: "proxied", command: "y"}]};
