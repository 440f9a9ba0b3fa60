module.exports = [{proxy: {}}];
