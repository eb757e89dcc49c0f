// Random Qwen3 checkpoints in temporary directories, for tests.
//
//   const ck = writeTempCheckpoint(SMALL_SHAPE, { dtype: "BF16", seed: 1, shards: 2 });
//   ... openCheckpoint(ck.dir) ...
//   ck.remove();
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomQwen3Weights, type Qwen3Shape } from "../../src/checkpoint/write-random.js";
import { writeRandomQwen3Checkpoint, type RandomCheckpointOptions, type WrittenCheckpoint } from "../../src/node/random-checkpoint.js";

/** A small Qwen3 with head_dim != hidden/heads and grouped-query attention (2 queries per kv head). */
export const SMALL_SHAPE: Qwen3Shape = {
  vocab_size: 50,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 12,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  max_position_embeddings: 128,
};

/** A fresh empty temporary directory. */
export function makeTempDir(prefix = "jacsteer-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TempCheckpoint extends WrittenCheckpoint {
  /** The f32 values the tensors were generated from (before rounding to the storage dtype). */
  source(): Map<string, { shape: number[]; data: Float32Array }>;
  /** Delete the directory. */
  remove(): void;
}

/** Write a random checkpoint into a new temporary directory. Defaults: F32, seed 1, one file. */
export function writeTempCheckpoint(
  shape: Qwen3Shape = SMALL_SHAPE,
  opts: Partial<RandomCheckpointOptions> = {},
): TempCheckpoint {
  const dir = makeTempDir();
  const full: RandomCheckpointOptions = { dtype: "F32", seed: 1, ...opts };
  const written = writeRandomQwen3Checkpoint(dir, shape, full);
  return {
    ...written,
    source: () => randomQwen3Weights(shape, { seed: full.seed, tied: full.tied }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
