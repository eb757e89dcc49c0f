// The graph-free steering-Jacobian engine: batched J V, J^T U and J^T J V on packed weights, with
// matrix products behind ParallelGemm (serial here; worker threads in src/node/thread-pool.ts); and
// the experiments' batched forward built from the same layers (forward.ts).
export { SteeringEngine, type SteeringEngineOptions } from "./steering-engine.js";
export { SerialGemm, gemmSlices, gemmFlops, runGemmSlices, SLICE_ARGS, type GemmJob, type ParallelGemm } from "./parallel-gemm.js";
export { ForwardModel, chunkByBudget, DEFAULT_ACTIVATION_BUDGET, type ForwardCache, type ForwardOptions } from "./forward.js";
export { STEERED_BUDGET_BYTES, type SteeredResult } from "./steered-pass.js";
