// Loading weights into wasm memory from any tensor source (a safetensors checkpoint on disk in Node,
// fetched buffers in a browser). Every tensor is converted to f32 and checked for NaN/Inf on the way in.
import { Tensor, type AutodiffContext } from "../autodiff/tensor.js";
import { qwen3TensorShapes, type Qwen3Config } from "./config.js";

export interface TensorSource {
  /** Where the tensor lives, for messages (a file name). */
  describe(name: string): string;
  has(name: string): boolean;
  shape(name: string): number[];
  /** Convert the stored tensor to f32 into dst (dst.length = product of shape). */
  readF32(name: string, dst: Float32Array): void;
}

/**
 * A TensorSource that can also read a range of rows (along the first dimension) without reading the
 * whole tensor: the steering engine reads only the prompts' rows of the embedding matrix this way.
 */
export interface RowReadableTensorSource extends TensorSource {
  /** Rows [row0, row0 + rows) of `name` as f32 into dst (dst.length = rows * row size). */
  readRowsF32(name: string, row0: number, rows: number, dst: Float32Array): void;
}

export function canReadRows(src: TensorSource): src is RowReadableTensorSource {
  return typeof (src as Partial<RowReadableTensorSource>).readRowsF32 === "function";
}

/** Weights may take at most this much of the 4 GiB wasm32 memory; the rest is for activations and graphs. */
export const MAX_WEIGHT_BYTES = 3.5 * 2 ** 30;

/**
 * Refuse up front rather than fail half-way: wasm32 addresses 4 GiB, and activations need room too.
 * `what` says which weights (for the message).
 */
export function checkWeightBudget(floats: number, what: string, advice = "use a lower --target-layer or a smaller model"): void {
  if (floats * 4 > MAX_WEIGHT_BYTES) {
    throw new WeightError(
      `model too large for memory: ${what} need ${((floats * 4) / 2 ** 30).toFixed(2)} GiB as f32, ` +
        `more than the ${(MAX_WEIGHT_BYTES / 2 ** 30).toFixed(1)} GiB jacsteer allows for weights in one wasm32 memory (4 GiB); ${advice}`,
    );
  }
}

export class WeightError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WeightError";
  }
}

export interface LayerWeights {
  inputNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  qNorm: Tensor;
  kNorm: Tensor;
  postNorm: Tensor;
  gate: Tensor;
  up: Tensor;
  down: Tensor;
}

export interface Qwen3Weights {
  embed: Tensor;
  layers: LayerWeights[];
  /** Present when loaded with `head: true`. */
  finalNorm: Tensor | null;
  lmHead: Tensor | null;
}

function loadOne(ctx: AutodiffContext, src: TensorSource, name: string, shape: number[]): Tensor {
  if (!src.has(name)) throw new WeightError(`missing tensor "${name}" in ${src.describe(name)}`);
  const got = src.shape(name);
  if (got.length !== shape.length || got.some((s, i) => s !== shape[i])) {
    throw new WeightError(`tensor "${name}" in ${src.describe(name)} has shape [${got.join(", ")}], expected [${shape.join(", ")}]`);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  const ptr = ctx.rt.heap.allocF32(n);
  const view = ctx.rt.heap.f32(ptr, n);
  src.readF32(name, view);
  for (let i = 0; i < n; i++) {
    const x = view[i];
    if (x - x !== 0) {
      throw new WeightError(`tensor "${name}" in ${src.describe(name)} has a non-finite value (${x}) at flat index ${i}`);
    }
  }
  return new Tensor(ctx, ptr, shape);
}

/**
 * Load layers [0, layers) and, with `head`, the final norm and LM head. Layers past the last one a
 * computation needs are never read: a Jacobian up to layer T loads T + 1 layers.
 */
export function loadQwen3Weights(ctx: AutodiffContext, cfg: Qwen3Config, src: TensorSource, opts: { layers?: number; head?: boolean; advice?: string } = {}): Qwen3Weights {
  const layers = opts.layers ?? cfg.numLayers;
  if (layers > cfg.numLayers) throw new WeightError(`asked for ${layers} layers, the model has ${cfg.numLayers}`);
  const shapes = qwen3TensorShapes(cfg, layers);
  let floats = 0;
  for (const sh of shapes.values()) floats += sh.reduce((a, b) => a * b, 1);
  if (opts.head) floats += cfg.hiddenSize * (1 + (cfg.tieWordEmbeddings ? 0 : cfg.vocabSize));
  checkWeightBudget(floats, `layers 0..${layers - 1}`, opts.advice);
  const get = (name: string) => loadOne(ctx, src, name, shapes.get(name)!);
  const embed = get("model.embed_tokens.weight");
  const out: LayerWeights[] = [];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.`;
    out.push({
      inputNorm: get(p + "input_layernorm.weight"),
      q: get(p + "self_attn.q_proj.weight"),
      k: get(p + "self_attn.k_proj.weight"),
      v: get(p + "self_attn.v_proj.weight"),
      o: get(p + "self_attn.o_proj.weight"),
      qNorm: get(p + "self_attn.q_norm.weight"),
      kNorm: get(p + "self_attn.k_norm.weight"),
      postNorm: get(p + "post_attention_layernorm.weight"),
      gate: get(p + "mlp.gate_proj.weight"),
      up: get(p + "mlp.up_proj.weight"),
      down: get(p + "mlp.down_proj.weight"),
    });
  }
  let finalNorm: Tensor | null = null, lmHead: Tensor | null = null;
  if (opts.head) {
    finalNorm = loadOne(ctx, src, "model.norm.weight", [cfg.hiddenSize]);
    // Tied embeddings: lm_head.weight when present, else the embedding matrix (CONTRACT.md section 1).
    lmHead = src.has("lm_head.weight") ? loadOne(ctx, src, "lm_head.weight", [cfg.vocabSize, cfg.hiddenSize]) : null;
    if (!lmHead) {
      if (!cfg.tieWordEmbeddings) throw new WeightError(`missing tensor "lm_head.weight" in ${src.describe("lm_head.weight")} (tie_word_embeddings is false)`);
      lmHead = embed;
    }
  }
  return { embed, layers: out, finalNorm, lmHead };
}
