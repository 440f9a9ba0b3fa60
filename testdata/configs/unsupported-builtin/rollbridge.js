import crypto from "node:crypto";
export default {application: crypto.randomUUID(), proxy: {}, processes: []};
