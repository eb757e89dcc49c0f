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
export { EngineMelboObjective } from "./melbo/engine-objective.js";
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
export { selectDatasetItems, type DatasetChoice, type DatasetInput } from "./evaluation/select.js";

// The one-call API (src/api/): powerIter, melbo, caa, evalAb, generate on an opened checkpoint.
export {
  AbortError,
  throwIfAborted,
  defaultLayers,
  powerIter,
  POWER_ITER_METHODS,
  CAA_MIN_NORM_SHARE,
  evalAb,
  generate,
  type CallResult,
  type VectorFileResult,
  type CommonOptions,
  type OpenedModel,
  type PromptInput,
  type PromptStyleOptions,
  type TokenizerInput,
  type PowerIterMethod,
  type PowerIterOptions,
  type PowerIterProgress,
  type PowerIterResult,
  type EngineWeightStats,
  type MelboApiOptions,
  type MelboApiResult,
  type CaaOptions,
  type CaaApiResult,
  type CaaFirstItem,
  type EvalAbOptions,
  type EvalAbResult,
  type EvalAbFirstItem,
  type GenerateApiOptions,
  type GenerateResult,
  type Generation,
  type SteeringVectorInput,
  type VectorChoice,
} from "./api/index.js";
import { melbo as melboCall, caa as caaCall, type MelboApiOptions, type CaaOptions } from "./api/index.js";
import * as melboModule from "./melbo/melbo.js";
import * as caaModule from "./caa/caa.js";
/**
 * MELBO vectors in one call: `await melbo({ model, runtime, prompts, ... })`. It also carries the MELBO
 * building blocks this entry exported as the namespace `melbo` before (`melbo.trainMelbo`, ...).
 */
export const melbo: typeof melboCall & typeof melboModule = Object.assign((o: MelboApiOptions) => melboCall(o), melboModule);
/** A CAA vector in one call: `await caa({ model, runtime, dataset, ... })`; also `caa.caaVectorBatched`, ... as before. */
export const caa: typeof caaCall & typeof caaModule = Object.assign((o: CaaOptions) => caaCall(o), caaModule);
