const shared = require("./shared.json");
module.exports = {workers: shared.workers.map((id) => ({id, command: `node ${id}.js`}))};
