// Steered text generation: KV-cache decoding (the autodiff reference and the batched engine path), sampling, the generation loop. Platform-neutral.
export { KVCache, SteeredDecoder, type Steering } from "./decoder.js";
export { argmax, applyTopP, chooseToken, softmaxWithTemperature, type SamplingOptions } from "./sampling.js";
export { createRng } from "./prng.js";
export { generateTokens, parseScaleList, TextStream, type GenerateOptions, type GenerationResult } from "./generate.js";
export { generateBatched, type BatchedGenerateOptions, type BatchedSequence } from "./batched.js";
