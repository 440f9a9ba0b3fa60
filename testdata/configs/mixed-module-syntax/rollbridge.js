module.exports = {proxy: {}};
export default {proxy: {}};
