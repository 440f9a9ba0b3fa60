export default async () => {
  const port = await Promise.resolve(18000);
  return {proxy: {}, processes: [{id: "web", policy: "proxied", command: "x", port}]};
};
