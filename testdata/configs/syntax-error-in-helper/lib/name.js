const parts = {first: "shop" second: "web"};
export default parts.first;
