export default {control: {mode: 0660}, proxy: {}, processes: []};
