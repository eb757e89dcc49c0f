// Eigensolvers for A = J^T J on a per-vector or block operator: block power iteration (the seed's
// algorithm) and block Lanczos (the default: the same answer in fewer products).
export * from "./common.js";
export { blockPowerIteration, blockPowerIterationAsync, type SolveOptions } from "./block-power.js";
export { blockLanczos, blockLanczosAsync, DEFAULT_RESIDUAL_TOL, type KrylovOptions } from "./block-lanczos.js";
export { symmetricEigenTridiagonal } from "./symmetric-eigen.js";
export { resumableOperator, fingerprintVectors, ReplayMismatchError, type ReplayBlock, type ResumableOperator, type ResumableOptions } from "./replay.js";
export { EtaEstimator, formatDuration, type Eta, type EtaOptions, type Observation } from "./eta.js";
