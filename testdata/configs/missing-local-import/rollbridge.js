import shared from "./shared.js";
export default shared;
