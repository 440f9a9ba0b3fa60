export default {
  proxy: {port: 8182,},
  processes: [
    {id: "web" policy: "proxied"}
  ]
};
