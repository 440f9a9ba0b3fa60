// The same kind of app written as CommonJS. module.exports may also be a
// function (sync or async) that returns the config.
const os = require("node:os");
const path = require("node:path");

module.exports = async () => ({
  application: path.basename(__dirname) === "examples" ? "shop-cjs" : path.basename(__dirname),
  control: {mode: "660"},
  proxy: {host: "127.0.0.1", port: 8183},
  processes: [
    {
      id: "web",
      policy: "proxied",
      command: "node server.js --port {{port}}",
      port: {from: 18100, to: 18199},
      env: {NODE_ENV: "production", HOSTNAME_LABEL: os.hostname()}
    },
    {
      id: "scheduler",
      policy: "singleton",
      command: "node scheduler.js",
      restart: {maxRestarts: 5, windowMs: 60000, backoffFactor: 2, maxDelayMs: 30000}
    }
  ]
});
