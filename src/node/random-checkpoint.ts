// Writing random Qwen3 checkpoints to disk (see src/checkpoint/write-random.ts for the weights).
// Tensors are generated one at a time while the file is written, so large (benchmark-sized)
// checkpoints need memory for only the largest tensor.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  planShards,
  qwen3ConfigJson,
  qwen3TensorShapes,
  randomQwen3Tensor,
  type Qwen3Shape,
} from "../checkpoint/write-random.js";
import { DTYPE_BITS, type FloatDtype } from "../safetensors/dtype.js";
import type { TensorSpec } from "../safetensors/serialize.js";
import { writeFileAtomic, writeSafetensorsFileStreaming } from "./safetensors-file.js";

export interface RandomCheckpointOptions {
  /** Storage dtype of every tensor. */
  dtype: FloatDtype;
  seed: number;
  /** Number of safetensors files (default 1: model.safetensors; more adds model.safetensors.index.json). */
  shards?: number;
  /** Tie lm_head to the embeddings (no lm_head.weight); default: the shape's tie_word_embeddings, else true. */
  tied?: boolean;
}

export interface WrittenCheckpoint {
  dir: string;
  /** The config.json contents. */
  config: Record<string, unknown>;
  /** Safetensors file names (relative to dir). */
  files: string[];
  /** Bytes of tensor data over all files (the index's metadata.total_size). */
  totalSize: number;
}

/** Write config.json and the weights of a random Qwen3 model into `dir` (created if needed). */
export function writeRandomQwen3Checkpoint(dir: string, shape: Qwen3Shape, opts: RandomCheckpointOptions): WrittenCheckpoint {
  const config = qwen3ConfigJson(shape, { dtype: opts.dtype, tied: opts.tied });
  const tensors = qwen3TensorShapes(shape, opts.tied).map((t) => ({
    ...t,
    bytes: (t.shape.reduce((a, b) => a * b, 1) * DTYPE_BITS[opts.dtype]) / 8,
  }));
  const shards = planShards(tensors, opts.shards ?? 1);
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  const weightMap: Record<string, string> = {};
  for (const shard of shards) {
    const specs: Record<string, TensorSpec> = {};
    for (const t of shard.tensors) {
      specs[t.name] = { dtype: opts.dtype, shape: t.shape };
      weightMap[t.name] = shard.file;
    }
    writeSafetensorsFileStreaming(
      join(dir, shard.file),
      specs,
      (name, t) => randomQwen3Tensor(name, t.shape, opts.seed),
      { format: "pt" },
    );
  }
  const totalSize = tensors.reduce((a, t) => a + t.bytes, 0);
  if (shards.length > 1) {
    const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]!]));
    const index = { metadata: { total_size: totalSize }, weight_map: sorted };
    writeFileAtomic(join(dir, "model.safetensors.index.json"), JSON.stringify(index, null, 2) + "\n");
  }
  return { dir, config, files: shards.map((s) => s.file), totalSize };
}
