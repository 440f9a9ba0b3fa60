export default new Map([["proxy", {}], ["processes", []]]);
