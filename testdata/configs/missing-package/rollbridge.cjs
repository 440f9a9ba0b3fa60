require("dotenv").config();
module.exports = {proxy: {}, processes: []};
