export default {control: "rollbridge.sock", proxy: [], processes: {}};
