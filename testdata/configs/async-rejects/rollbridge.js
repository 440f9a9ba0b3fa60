export default async () => { throw new TypeError("could not read secrets"); };
