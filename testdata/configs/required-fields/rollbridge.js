export default {proxy: {}, processes: [{policy: "proxied", port: 18000}, {id: null, command: null}, null, [1]]};
