export const proxy = {};
export const processes = [];
