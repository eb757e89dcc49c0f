// Typed wrappers of the kernels, one module per op.
export * as matmul from "./matmul.js";
export * as rmsnorm from "./rmsnorm.js";
export * as rope from "./rope.js";
export * as silu from "./silu.js";
export * as attention from "./attention.js";
