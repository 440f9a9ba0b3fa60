export default {proxy: {}, processes: [{id: "worker", command: "x"}]};
