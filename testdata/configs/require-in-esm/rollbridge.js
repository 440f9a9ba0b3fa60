// A file with ES module syntax has no require(), as in Node.
const path = require("path");
export default {application: path.basename("/x/y"), proxy: {}, processes: []};
