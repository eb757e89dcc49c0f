// Steered text generation: KV-cache decoding, sampling, the generation loop. Platform-neutral.
export { KVCache, SteeredDecoder, type Steering } from "./decoder.js";
export { argmax, applyTopP, chooseToken, softmaxWithTemperature, type SamplingOptions } from "./sampling.js";
export { createRng } from "./prng.js";
export { generateTokens, parseScaleList, TextStream, type GenerateOptions, type GenerationResult } from "./generate.js";
