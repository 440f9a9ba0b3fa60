// __dirname and __filename exist only in CommonJS; use import.meta.dirname.
export default {application: typeof __filename === "undefined" ? __dirname : "x", proxy: {}, processes: []};
