// jacsteer as a library: everything the command line does, platform-neutral (no Node modules), so a
// browser build can use it. Node-specific pieces (reading checkpoints from disk, the kernel loader,
// worker threads) are in "jacsteer/node".
export * from "./runtime/runtime.js";
export * from "./runtime/heap.js";
export * from "./runtime/kernels.js";
export * as kernels from "./kernels/index.js";
export * from "./autodiff/index.js";
export * from "./model/config.js";
export * from "./model/weights.js";
export * from "./model/qwen3.js";
export * from "./jacobian/steering-jacobian.js";
export * from "./jacobian/positions.js";
export * as linalg from "./linalg/dense.js";
export * from "./solvers/index.js";
export * from "./engine/index.js";
export * as safetensors from "./safetensors/index.js";
export * from "./io/vector-file.js";
export * from "./io/run-identity.js";
export * from "./io/state-file.js";
export * as gguf from "./io/gguf.js";
export * from "./io/control-vector.js";
export * from "./tokenizer/index.js";
export * from "./verify/verify.js";
export * as melbo from "./melbo/melbo.js";
export { EngineMelboObjective } from "./melbo/engine-objective.js";
export * as caa from "./caa/caa.js";
export * as compare from "./compare/compare.js";
export * as generation from "./generation/index.js";
export * as evaluation from "./evaluation/index.js";
export * as report from "./report/index.js";
export * as checkpoint from "./checkpoint/write-random.js";
export * as steeringEval from "./steering-eval/kl.js";
export * as atlas from "./atlas/atlas.js";
export * as stability from "./stability/stability.js";
export * as linearity from "./linearity/linearity.js";
export * as dct from "./dct/dct.js";
