export default {
  get proxy() { throw new Error("proxy settings unavailable"); },
  processes: []
};
