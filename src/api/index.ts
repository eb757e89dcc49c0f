// The one-call API: powerIter, melbo, caa, evalAb, generate on an opened checkpoint (platform-neutral).
// jacsteer/node has the same functions taking a checkpoint directory path.
export { AbortError, throwIfAborted, defaultLayers, type CallResult, type VectorFileResult, type CommonOptions, type OpenedModel, type PromptInput, type PromptStyleOptions, type TokenizerInput } from "./common.js";
export { powerIter, POWER_ITER_METHODS, type PowerIterMethod, type PowerIterOptions, type PowerIterProgress, type PowerIterResult, type EngineWeightStats } from "./power-iter.js";
export { melbo, type MelboApiOptions, type MelboApiResult } from "./melbo.js";
export { caa, CAA_MIN_NORM_SHARE, type CaaOptions, type CaaApiResult, type CaaFirstItem } from "./caa.js";
export { evalAb, type EvalAbOptions, type EvalAbResult, type EvalAbFirstItem } from "./eval-ab.js";
export { generate, type GenerateApiOptions, type GenerateResult, type Generation } from "./generate.js";
export type { SteeringVectorInput, VectorChoice } from "./steering.js";
