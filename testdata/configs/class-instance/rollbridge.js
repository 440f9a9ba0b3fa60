// Getters run and inherited properties are visible.
class Base { get proxy() { return {port: 8400}; } }
class Config extends Base {
  constructor() { super(); this.application = "classy"; }
  get processes() { return [{id: "web", policy: "proxied", command: "x", port: 18000}]; }
}
export default new Config();
