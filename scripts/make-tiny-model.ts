// Writes the bundled default model's weights: models/tiny/config.json and models/tiny/model.safetensors
// (a random Qwen3 with a byte-level vocabulary; the tokenizer files come from make-tiny-tokenizer).
// Deterministic: running it again reproduces the files byte for byte.
//
//   node dist/scripts/make-tiny-model.js [OUT_DIR]     (default: <package>/models/tiny)
import { join } from "node:path";
import { TINY_MODEL_SEED, TINY_MODEL_SHAPE } from "../src/checkpoint/write-random.js";
import { writeRandomQwen3Checkpoint } from "../src/node/random-checkpoint.js";
import { packageRoot } from "../src/node/runtime.js";

const out = process.argv[2] ?? join(packageRoot(), "models", "tiny");
const written = writeRandomQwen3Checkpoint(out, TINY_MODEL_SHAPE, { dtype: "F32", seed: TINY_MODEL_SEED, tied: true });
console.log(`wrote ${join(out, "config.json")} and ${written.files.map((f) => join(out, f)).join(", ")} (${written.totalSize} bytes of weights)`);
