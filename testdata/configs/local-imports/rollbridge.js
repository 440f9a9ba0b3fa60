import defaults from "./lib/defaults.js";
import {webProcess} from "./lib/web.mjs";
import legacy from "./lib/legacy.cjs";
import ports from "./ports.json" with {type: "json"};

export default {
  application: defaults.application,
  proxy: {port: ports.proxy},
  processes: [webProcess(ports.web), ...legacy.workers]
};
