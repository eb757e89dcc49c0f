export * from "./tensor.js";
export * from "./ops.js";
export { grad, jvp, jvpGraph, type GradOptions } from "./grad.js";
