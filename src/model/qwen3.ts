// Qwen3 decoder forward pass over the autodiff ops, with the semantics of transformers'
// modeling_qwen3.py (CONTRACT.md section 1). Layer numbering: `layerOutput(i)` is the residual stream
// after decoder layer i (transformers' hidden_states[i + 1]); the steering vector is added there.
import { addRowVector, add, attention, linear, reshape, rmsnorm, rope, siluMul, type RopeTables } from "../autodiff/ops.js";
import { Tensor, fromArray, type AutodiffContext } from "../autodiff/tensor.js";
import type { Qwen3Config } from "./config.js";
import { ropeTables } from "../kernels/rope.js";
import type { Qwen3Weights, LayerWeights } from "./weights.js";

export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InputError";
  }
}

/** A prompt must be non-empty and every id inside the vocabulary; `where` names it in the message. */
export function checkTokens(cfg: Qwen3Config, tokens: readonly number[], where = "--tokens"): void {
  if (tokens.length === 0) throw new InputError(`${where}: empty prompt (no tokens)`);
  for (const t of tokens) {
    if (!Number.isInteger(t) || t < 0 || t >= cfg.vocabSize) {
      throw new InputError(`${where}: token id ${t} is outside the vocabulary [0, ${cfg.vocabSize})`);
    }
  }
}

export class Qwen3Model {
  /** RoPE tables by length, in JS memory: the wasm copies are made per use, so none outlives a heap scope. */
  private ropeCache = new Map<number, { cos: Float32Array; sin: Float32Array }>();

  constructor(
    readonly ctx: AutodiffContext,
    readonly config: Qwen3Config,
    readonly weights: Qwen3Weights,
  ) {}

  /** Number of layers whose weights are loaded (a prefix of the model). */
  get loadedLayers(): number {
    return this.weights.layers.length;
  }

  checkTokens(tokens: readonly number[], where = "--tokens"): void {
    checkTokens(this.config, tokens, where);
  }

  /** Embedding rows for the tokens: [T, d], a constant. */
  embed(tokens: readonly number[]): Tensor {
    this.checkTokens(tokens);
    const d = this.config.hiddenSize;
    const heap = this.ctx.rt.heap;
    const out = new Tensor(this.ctx, heap.allocF32(tokens.length * d), [tokens.length, d]);
    tokens.forEach((tok, i) => this.ctx.rt.k.copy(out.ptr + i * d * 4, this.weights.embed.ptr + tok * d * 4, d));
    return out;
  }

  /**
   * cos/sin tables for positions 0..T-1 ([T, headDim/2]) as wasm tensors, computed in float32 as
   * transformers does. Allocated on the current heap scope, like any other tensor of the computation.
   */
  ropeTables(T: number): RopeTables {
    let t = this.ropeCache.get(T);
    if (!t) {
      t = ropeTablesF32(T, this.config.headDim, this.config.ropeTheta);
      this.ropeCache.set(T, t);
    }
    const half = this.config.headDim / 2;
    return { cos: fromArray(this.ctx, t.cos, [T, half]), sin: fromArray(this.ctx, t.sin, [T, half]) };
  }

  /** One decoder layer: h [T, d] -> h [T, d]. `tables` (from ropeTables(T)) may be shared by the layers of one pass. */
  layer(i: number, h: Tensor, tables: RopeTables = this.ropeTables(h.shape[0])): Tensor {
    const c = this.config;
    const { q, k, v } = this.attentionInputs(i, h, tables);
    const a = attention(q, k, v, { heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, scale: 1 / Math.sqrt(c.headDim) });
    return this.layerOutput(i, h, a);
  }

  /** The weights of layer i, or a clear error when it is not loaded. */
  layerWeights(i: number): LayerWeights {
    const w = this.weights.layers[i];
    if (!w) throw new InputError(`layer ${i} is not loaded (model has ${this.config.numLayers} layers, ${this.loadedLayers} loaded)`);
    return w;
  }

  /**
   * The attention inputs of layer i for rows h [n, d]: q [n, heads*hd] and k [n, kvHeads*hd] after the
   * per-head q/k norms and RoPE (tables for the rows' positions), v [n, kvHeads*hd].
   */
  attentionInputs(i: number, h: Tensor, tables: RopeTables): { q: Tensor; k: Tensor; v: Tensor } {
    const c = this.config;
    const w = this.layerWeights(i);
    const n = h.shape[0];
    const eps = c.rmsNormEps;
    const x = rmsnorm(h, w.inputNorm, eps);
    const headNorm = (t: Tensor, heads: number, weight: Tensor) =>
      reshape(rmsnorm(reshape(t, [n * heads, c.headDim]), weight, eps), [n, heads * c.headDim]);
    return {
      q: rope(headNorm(linear(x, w.q), c.numHeads, w.qNorm), tables, c.numHeads, c.headDim),
      k: rope(headNorm(linear(x, w.k), c.numKvHeads, w.kNorm), tables, c.numKvHeads, c.headDim),
      v: linear(x, w.v),
    };
  }

  /** The rest of layer i given the attention output a [n, heads*hd]: o_proj and residual, then the MLP and residual. */
  layerOutput(i: number, h: Tensor, a: Tensor): Tensor {
    const w = this.layerWeights(i);
    const h1 = add(h, linear(a, w.o));
    const x2 = rmsnorm(h1, w.postNorm, this.config.rmsNormEps);
    return add(h1, linear(siluMul(linear(x2, w.gate), linear(x2, w.up)), w.down));
  }

  /**
   * Run layers [from, to] on h, adding `steer` (a [d] tensor) to the output of layer `steerLayer` if
   * given. Returns the output of layer `to`.
   */
  runLayers(h: Tensor, from: number, to: number, steer?: { layer: number; vector: Tensor }): Tensor {
    const tables = from <= to ? this.ropeTables(h.shape[0]) : undefined;
    for (let i = from; i <= to; i++) {
      h = this.layer(i, h, tables);
      if (steer && steer.layer === i) h = addRowVector(h, steer.vector);
    }
    return h;
  }

  /** Every residual stream: [embeddings, layer 0 output, ..., layer L-1 output] (hidden_states). */
  hiddenStates(tokens: readonly number[], steer?: { layer: number; vector: Tensor }): Tensor[] {
    let h = this.embed(tokens);
    const states = [h];
    for (let i = 0; i < this.loadedLayers; i++) {
      h = this.runLayers(h, i, i, steer);
      states.push(h);
    }
    return states;
  }

  /** Logits [T, vocab] from the output of the last layer. */
  logits(lastHidden: Tensor): Tensor {
    if (!this.weights.finalNorm || !this.weights.lmHead) throw new Error("logits: the LM head is not loaded");
    return linear(rmsnorm(lastHidden, this.weights.finalNorm, this.config.rmsNormEps), this.weights.lmHead);
  }
}

/** cos/sin tables [T, headDim/2] for positions 0..T-1 (transformers' Qwen3RotaryEmbedding, in float32). */
export function ropeTablesF32(T: number, headDim: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  return ropeTables(Array.from({ length: T }, (_, t) => t), headDim, theta);
}
