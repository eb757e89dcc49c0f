// jacsteer on Node: files, the kernel loader with relaxed SIMD, checkpoints on disk, worker threads.
export * from "./runtime.js";
export * from "./relaxed-simd.js";
export * from "./checkpoint.js";
export * from "./safetensors-file.js";
export * from "./random-checkpoint.js";
export * from "./tokenizer-files.js";
export * from "./thread-pool.js";
export * from "./api.js";
