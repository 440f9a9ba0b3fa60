module.exports = {proxy: {}, processes: []};
