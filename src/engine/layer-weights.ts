// Decoder-layer weights for the steering engine, in the layouts its kernels read: the seven
// projections as packed 8-column panels (assembly/matmul.ts), for A * W^T (forward and JVP) and for
// A * W (VJP), packed per product from the stored bytes that weight-store.ts keeps or streams; the
// norm weights as small f32 vectors, always kept.
import type { Runtime } from "../runtime/runtime.js";
import type { PackedMatrix } from "../kernels/matmul.js";
import type { PackSource } from "./parallel-gemm.js";
import type { Qwen3Config } from "../model/config.js";
import { WeightError, canReadRows, type TensorSource } from "../model/weights.js";

export const PROJECTIONS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
export type Projection = (typeof PROJECTIONS)[number];

/** A projection's panels; `pack` when they are made from stored bytes right before each product. */
export interface PackedWeight extends PackedMatrix {
  readonly pack?: PackSource;
}

export type LayerMatrices = Record<Projection, PackedWeight>;

export interface LayerNorms {
  /** input_layernorm [d] */
  input: number;
  /** self_attn.q_norm [headDim] */
  q: number;
  /** self_attn.k_norm [headDim] */
  k: number;
  /** post_attention_layernorm [d] */
  post: number;
}

export interface EngineLayer {
  index: number;
  norms: LayerNorms;
  /** Packed for C = A * W^T. */
  fwd: LayerMatrices;
  /** Packed for C = A * W (VJP); null for layers only run forward. */
  bwd: LayerMatrices | null;
}

/** The checkpoint name of layer i's projection p. */
export function tensorName(i: number, p: Projection): string {
  return `model.layers.${i}.${TENSOR_NAME[p]}`;
}

const TENSOR_NAME: Record<Projection, string> = {
  q: "self_attn.q_proj.weight",
  k: "self_attn.k_proj.weight",
  v: "self_attn.v_proj.weight",
  o: "self_attn.o_proj.weight",
  gate: "mlp.gate_proj.weight",
  up: "mlp.up_proj.weight",
  down: "mlp.down_proj.weight",
};

/** [out, in] of each projection. */
export function projectionShape(cfg: Qwen3Config, p: Projection): [number, number] {
  const d = cfg.hiddenSize, q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim, I = cfg.intermediateSize;
  switch (p) {
    case "q": return [q, d];
    case "k": return [kv, d];
    case "v": return [kv, d];
    case "o": return [d, q];
    case "gate": return [I, d];
    case "up": return [I, d];
    case "down": return [d, I];
  }
}

function checkShape(src: TensorSource, name: string, shape: readonly number[]): void {
  if (!src.has(name)) throw new WeightError(`missing tensor "${name}" in ${src.describe(name)}`);
  const got = src.shape(name);
  if (got.length !== shape.length || got.some((s, i) => s !== shape[i])) {
    throw new WeightError(`tensor "${name}" in ${src.describe(name)} has shape [${got.join(", ")}], expected [${shape.join(", ")}]`);
  }
}

function checkFinite(src: TensorSource, name: string, x: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) throw new WeightError(`tensor "${name}" in ${src.describe(name)} has a non-finite value (${v}) at flat index ${i}`);
  }
}

/** Read tensor `name` (expected `shape`) as checked f32 into wasm memory at ptr. */
function readTensorInto(rt: Runtime, src: TensorSource, name: string, shape: readonly number[], ptr: number): void {
  checkShape(src, name, shape);
  const view = rt.heap.f32(ptr, shape.reduce((a, b) => a * b, 1));
  src.readF32(name, view);
  checkFinite(src, name, view);
}

/** A small f32 vector tensor, allocated on rt.heap. */
export function loadVector(rt: Runtime, src: TensorSource, name: string, n: number): number {
  const ptr = rt.heap.allocF32(n);
  readTensorInto(rt, src, name, [n], ptr);
  return ptr;
}

/** Norm weights of layer i, allocated on rt.heap. */
export function loadLayerNorms(rt: Runtime, cfg: Qwen3Config, src: TensorSource, i: number): LayerNorms {
  const p = `model.layers.${i}.`;
  return {
    input: loadVector(rt, src, p + "input_layernorm.weight", cfg.hiddenSize),
    q: loadVector(rt, src, p + "self_attn.q_norm.weight", cfg.headDim),
    k: loadVector(rt, src, p + "self_attn.k_norm.weight", cfg.headDim),
    post: loadVector(rt, src, p + "post_attention_layernorm.weight", cfg.hiddenSize),
  };
}

/**
 * Embedding rows of `tokens` into dst ([tokens.length, d]) (or rows of another [vocab, d] matrix:
 * `name`, e.g. the LM head's rows of the scored tokens). Reads only those rows when the source can
 * (RowReadableTensorSource); otherwise loads the whole matrix at the top of rt.heap, copies the rows
 * and releases it (call this before allocating anything that must outlive it).
 */
export function readEmbeddingRows(rt: Runtime, cfg: Qwen3Config, src: TensorSource, tokens: readonly number[], dst: number, name = "model.embed_tokens.weight"): void {
  const d = cfg.hiddenSize;
  checkShape(src, name, [cfg.vocabSize, d]);
  if (canReadRows(src)) {
    tokens.forEach((tok, r) => {
      const row = rt.heap.f32(dst + 4 * r * d, d);
      src.readRowsF32(name, tok, 1, row);
      checkFinite(src, name, row);
    });
    return;
  }
  rt.heap.scope(() => {
    const all = rt.heap.allocF32(cfg.vocabSize * d);
    src.readF32(name, rt.heap.f32(all, cfg.vocabSize * d));
    tokens.forEach((tok, r) => {
      rt.k.copy(dst + 4 * r * d, all + 4 * tok * d, d);
      checkFinite(src, name, rt.heap.f32(dst + 4 * r * d, d));
    });
  });
}
