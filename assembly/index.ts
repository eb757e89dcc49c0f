// Entry point of the kernel module. Every kernel works on f32 buffers given as byte offsets into the
// one imported (shared) memory; no kernel allocates. The host (src/runtime) owns the memory plan.
export * from "./elementwise";
export * from "./matmul";
export * from "./rmsnorm";
export * from "./rope";
export * from "./silu";
export * from "./attention";

/** First byte the host may use: everything below belongs to the module's static data. */
export function heapBase(): usize {
  return __heap_base;
}

/** 1 when this build was compiled with relaxed SIMD (fused multiply-add), else 0. */
export function isRelaxedBuild(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}
