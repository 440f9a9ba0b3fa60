export default () => () => ({proxy: {}, processes: []});
