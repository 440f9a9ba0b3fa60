export default {application: "imports"};
