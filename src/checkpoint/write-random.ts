// Random Qwen3 checkpoints: the Hugging Face config.json and the tensors (HF names, [out, in] shapes)
// of a Qwen3ForCausalLM with deterministic pseudo-random weights. Platform-neutral; the file writer
// is src/node/random-checkpoint.ts.
//
// Scaling keeps activations O(1) through many layers and the steering Jacobian well conditioned:
// projections ~ N(0, 1/in) (std 1/sqrt(in), so each output has about the variance of one input),
// embeddings ~ N(0, 1), RMSNorm weights 1 + 0.1 N(0, 1). Each tensor's values depend only on the
// seed and the tensor's name, so the same seed gives the same weights whatever the dtype or sharding.

import type { FloatDtype } from "../safetensors/dtype.js";
import { parseQwen3Config, qwen3CheckpointTensors } from "../model/config.js";

/** The shape of a Qwen3 model, with config.json's (snake_case) field names. */
export interface Qwen3Shape {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  /** Default hidden_size / num_attention_heads. */
  head_dim?: number;
  /** Default 1e-6. */
  rms_norm_eps?: number;
  /** Default 1e6. */
  rope_theta?: number;
  /** Default 4096. */
  max_position_embeddings?: number;
  /** Default true; `tied` in the options wins. */
  tie_word_embeddings?: boolean;
}

/** The bundled default model (models/tiny): byte-level vocabulary, 4 layers of width 64. */
export const TINY_MODEL_SHAPE: Qwen3Shape = {
  vocab_size: 256,
  hidden_size: 64,
  intermediate_size: 192,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  rms_norm_eps: 1e-6,
  rope_theta: 1_000_000,
  max_position_embeddings: 2048,
  tie_word_embeddings: true,
};
export const TINY_MODEL_SEED = 20250601;

const TORCH_DTYPE: Record<FloatDtype, string> = { F32: "float32", BF16: "bfloat16", F16: "float16" };

/** The config.json object for `shape` (HF Qwen3 fields). */
export function qwen3ConfigJson(shape: Qwen3Shape, opts: { dtype?: FloatDtype; tied?: boolean } = {}): Record<string, unknown> {
  const c = completeShape(shape, opts.tied);
  return {
    architectures: ["Qwen3ForCausalLM"],
    model_type: "qwen3",
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    head_dim: c.head_dim,
    hidden_act: "silu",
    attention_bias: false,
    attention_dropout: 0.0,
    rms_norm_eps: c.rms_norm_eps,
    rope_theta: c.rope_theta,
    rope_scaling: null,
    max_position_embeddings: c.max_position_embeddings,
    tie_word_embeddings: c.tie_word_embeddings,
    use_sliding_window: false,
    sliding_window: null,
    initializer_range: 0.02,
    use_cache: true,
    torch_dtype: TORCH_DTYPE[opts.dtype ?? "F32"],
  };
}

/** `shape` with every optional field filled in (and checked). */
export function completeShape(shape: Qwen3Shape, tied?: boolean): Required<Qwen3Shape> {
  const c: Required<Qwen3Shape> = {
    head_dim: shape.hidden_size / shape.num_attention_heads,
    rms_norm_eps: 1e-6,
    rope_theta: 1e6,
    max_position_embeddings: 4096,
    tie_word_embeddings: true,
    ...stripUndefined(shape),
  };
  if (tied !== undefined) c.tie_word_embeddings = tied;
  for (const k of [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
  ] as const) {
    if (!Number.isSafeInteger(c[k]) || c[k] <= 0) throw new Error(`Qwen3 shape: ${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.num_attention_heads % c.num_key_value_heads !== 0) {
    throw new Error(`Qwen3 shape: num_attention_heads ${c.num_attention_heads} is not a multiple of num_key_value_heads ${c.num_key_value_heads}`);
  }
  return c;
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export interface NamedShape {
  name: string;
  shape: number[];
}

/** Every tensor of the checkpoint with its HF name and [out, in] shape, in module order. */
export function qwen3TensorShapes(shape: Qwen3Shape, tied?: boolean): NamedShape[] {
  // The names and shapes are the model's (src/model/config.ts): one list for reading and writing.
  const cfg = parseQwen3Config(qwen3ConfigJson(shape, { tied }), "Qwen3 shape");
  return [...qwen3CheckpointTensors(cfg)].map(([name, dims]) => ({ name, shape: dims }));
}

/** How a tensor's values are drawn, from its name and shape. */
export function weightDistribution(name: string, shape: readonly number[]): { mean: number; std: number } {
  if (name.endsWith("norm.weight")) return { mean: 1, std: 0.1 }; // input/post_attention/q/k/final norms
  if (name === "model.embed_tokens.weight") return { mean: 0, std: 1 };
  return { mean: 0, std: 1 / Math.sqrt(shape[1]!) }; // [out, in] projections and an untied lm_head
}

/** The f32 values of one tensor: a function of (seed, name, shape) only. */
export function randomQwen3Tensor(name: string, shape: readonly number[], seed: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const { mean, std } = weightDistribution(name, shape);
  const out = new Float32Array(n);
  fillGaussian(out, tensorSeed(seed, name), mean, std);
  return out;
}

/** All tensors in memory (for small models and tests). */
export function randomQwen3Weights(
  shape: Qwen3Shape,
  opts: { seed: number; tied?: boolean },
): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of qwen3TensorShapes(shape, opts.tied)) {
    out.set(t.name, { shape: t.shape, data: randomQwen3Tensor(t.name, t.shape, opts.seed) });
  }
  return out;
}

/**
 * Split tensors (in the given order) into `shards` contiguous, non-empty groups of about equal size,
 * and name the files as Hugging Face does: model.safetensors, or model-0000k-of-0000n.safetensors.
 */
export function planShards<T extends { bytes: number }>(tensors: T[], shards: number): { file: string; tensors: T[] }[] {
  if (!Number.isSafeInteger(shards) || shards < 1) throw new Error(`shards must be a positive integer, got ${shards}`);
  if (shards > tensors.length) throw new Error(`cannot split ${tensors.length} tensors into ${shards} shards`);
  if (shards === 1) return [{ file: "model.safetensors", tensors: [...tensors] }];
  let remaining = tensors.reduce((a, t) => a + t.bytes, 0);
  const out: { file: string; tensors: T[] }[] = [];
  let i = 0;
  for (let k = 0; k < shards; k++) {
    const left = shards - k;
    const target = remaining / left;
    const group: T[] = [];
    let size = 0;
    if (left === 1) {
      group.push(...tensors.slice(i));
      i = tensors.length;
    } else {
      // Take at least one tensor, stop near the target, and leave one tensor for each later shard.
      while (i < tensors.length - (left - 1) && (group.length === 0 || size + tensors[i]!.bytes / 2 <= target)) {
        size += tensors[i]!.bytes;
        group.push(tensors[i++]!);
      }
    }
    remaining -= size;
    const pad = (x: number) => String(x).padStart(5, "0");
    out.push({ file: `model-${pad(k + 1)}-of-${pad(shards)}.safetensors`, tensors: group });
  }
  return out;
}

// ---- deterministic random numbers ----

/** A 32-bit seed for one tensor: FNV-1a of the name, mixed with the global seed. */
export function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32((h ^ mix32(seed >>> 0)) >>> 0);
}

function mix32(x: number): number {
  // murmur3 finalizer
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** out[i] = mean + std * N(0, 1), from a mulberry32 stream and the Box-Muller transform. */
export function fillGaussian(out: Float32Array, seed: number, mean: number, std: number): void {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const n = out.length;
  for (let i = 0; i < n; i += 2) {
    const u = next() + 0.5 / 4294967296; // (0, 1): log is finite
    const v = next();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = mean + std * r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * v);
  }
}
