const shared = require("./shared.cjs");
module.exports = shared;
