export default () => { throw "plain text thrown"; };
