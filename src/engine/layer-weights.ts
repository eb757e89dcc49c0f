// Decoder-layer weights for the steering engine, in the layouts its kernels read.
//
// A layer's seven projections are read one at a time as f32 into a reused raw buffer, checked, and
// packed into 8-column panels (assembly/matmul.ts): packBt for A * W^T (forward and JVP) and, for
// layers the VJP runs through, packB for A * W (VJP). The raw f32 copy is never kept. Norm weights
// are small and stay as f32 vectors.
import type { Runtime } from "../runtime/runtime.js";
import { packedFloats, type PackedMatrix } from "../kernels/matmul.js";
import type { Qwen3Config } from "../model/config.js";
import { WeightError, canReadRows, type TensorSource } from "../model/weights.js";

export const PROJECTIONS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
export type Projection = (typeof PROJECTIONS)[number];

export type LayerMatrices = Record<Projection, PackedMatrix>;

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

/** Floats of the largest projection: the size of the raw buffer loadLayer reads into. */
export function maxProjectionFloats(cfg: Qwen3Config): number {
  return Math.max(...PROJECTIONS.map((p) => projectionShape(cfg, p).reduce((a, b) => a * b, 1)));
}

/** Floats of one layer's projections packed one way. */
export function packedLayerFloats(cfg: Qwen3Config, bwd: boolean): number {
  let n = 0;
  for (const p of PROJECTIONS) {
    const [out, inp] = projectionShape(cfg, p);
    n += bwd ? packedFloats(inp, out) : packedFloats(out, inp);
  }
  return n;
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
export function readTensorInto(rt: Runtime, src: TensorSource, name: string, shape: readonly number[], ptr: number): void {
  checkShape(src, name, shape);
  const view = rt.heap.f32(ptr, shape.reduce((a, b) => a * b, 1));
  src.readF32(name, view);
  checkFinite(src, name, view);
}

/** A small f32 vector tensor, allocated on rt.heap. */
function loadVector(rt: Runtime, src: TensorSource, name: string, n: number): number {
  const ptr = rt.heap.allocF32(n);
  readTensorInto(rt, src, name, [n], ptr);
  return ptr;
}

/** Allocate (on rt.heap) room for one layer's packed matrices. */
export function allocLayerMatrices(rt: Runtime, cfg: Qwen3Config, bwd: boolean): LayerMatrices {
  const m = {} as LayerMatrices;
  for (const p of PROJECTIONS) {
    const [out, inp] = projectionShape(cfg, p);
    m[p] = bwd ? { ptr: rt.heap.allocF32(packedFloats(inp, out)), n: inp, k: out } : { ptr: rt.heap.allocF32(packedFloats(out, inp)), n: out, k: inp };
  }
  return m;
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
 * Read layer i's projections through `raw` (maxProjectionFloats floats) and pack them into `fwd` and,
 * when given, `bwd` (both from allocLayerMatrices).
 */
export function packLayerMatrices(rt: Runtime, cfg: Qwen3Config, src: TensorSource, i: number, raw: number, fwd: LayerMatrices, bwd: LayerMatrices | null): void {
  for (const p of PROJECTIONS) {
    const [out, inp] = projectionShape(cfg, p);
    readTensorInto(rt, src, `model.layers.${i}.${TENSOR_NAME[p]}`, [out, inp], raw);
    rt.k.packBt(raw, out, inp, fwd[p].ptr);
    if (bwd) rt.k.packB(raw, out, inp, bwd[p].ptr);
  }
}

/**
 * Embedding rows of `tokens` into dst ([tokens.length, d]). Reads only those rows when the source can
 * (RowReadableTensorSource); otherwise loads the whole matrix at the top of rt.heap, copies the rows
 * and releases it (call this before allocating anything that must outlive it).
 */
export function readEmbeddingRows(rt: Runtime, cfg: Qwen3Config, src: TensorSource, tokens: readonly number[], dst: number): void {
  const name = "model.embed_tokens.weight";
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
