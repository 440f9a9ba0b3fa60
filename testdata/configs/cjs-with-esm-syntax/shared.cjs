export default {proxy: {}, processes: []};
