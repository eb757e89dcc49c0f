// No-grad incremental decoding of a Qwen3Model with a KV cache, and the steering vector of
// CONTRACT.md section 1 added to the output of layer S at every position (prompt and generated).
//
// The arithmetic per layer is Qwen3Model.layer's (the same ops, run with recording off), except that
// keys and values of earlier positions come from the cache and the new rows' queries attend over
// all Tk = past + new positions: the attention kernel's Tq < Tk mode (queries are the last Tq rows).
// Everything a step allocates lives in a heap scope; the cache, the RoPE tables and the steering
// buffer are allocated once, for `capacity` positions, when the decoder is made.
import { addRowVector, sliceRows, type RopeTables } from "../autodiff/ops.js";
import { Tensor, empty } from "../autodiff/tensor.js";
import { ropeTables } from "../kernels/rope.js";
import type { Qwen3Model } from "../model/qwen3.js";

/** Keys and values of every layer for positions [0, length), in buffers of `capacity` rows [capacity, nKv * headDim]. */
export class KVCache {
  readonly keys: number[] = [];
  readonly values: number[] = [];
  /** Floats per row: nKv * headDim. */
  readonly rowFloats: number;
  length = 0;

  constructor(model: Qwen3Model, readonly capacity: number) {
    const c = model.config;
    this.rowFloats = c.numKvHeads * c.headDim;
    const heap = model.ctx.rt.heap;
    for (let i = 0; i < model.loadedLayers; i++) {
      this.keys.push(heap.allocF32(capacity * this.rowFloats));
      this.values.push(heap.allocF32(capacity * this.rowFloats));
    }
  }
}

export interface Steering {
  /** Decoder layer whose output receives the vector (0-based). */
  layer: number;
  /** Length hidden_size: already multiplied by the scale. */
  vector: ArrayLike<number>;
}

export class SteeredDecoder {
  readonly cache: KVCache;
  private readonly cos: number;
  private readonly sin: number;
  private readonly steerPtr: number;
  private steerLayer = -1;

  /**
   * Allocates the cache and tables on the model's heap (do it outside any scope that is released
   * while the decoder is in use). The model must have every layer and the LM head loaded.
   */
  constructor(
    readonly model: Qwen3Model,
    capacity: number,
    /** Rows per forward when appending many tokens (prompt prefill). */
    readonly prefillChunk = 256,
  ) {
    const c = model.config;
    if (model.loadedLayers !== c.numLayers) throw new Error(`SteeredDecoder: ${model.loadedLayers} of ${c.numLayers} layers loaded (generation needs all)`);
    if (!model.weights.lmHead) throw new Error("SteeredDecoder: the LM head is not loaded");
    if (!Number.isInteger(prefillChunk) || prefillChunk < 1) throw new Error(`SteeredDecoder: prefillChunk ${prefillChunk} must be a positive integer`);
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`SteeredDecoder: capacity ${capacity} must be a positive integer`);
    const heap = model.ctx.rt.heap;
    this.cache = new KVCache(model, capacity);
    // Tables for absolute positions 0..capacity-1; the rows for positions [p0, p0 + n) are a view.
    const half = c.headDim / 2;
    const t = ropeTables(Array.from({ length: capacity }, (_, p) => p), c.headDim, c.ropeTheta);
    this.cos = heap.allocF32(capacity * half);
    heap.f32(this.cos, capacity * half).set(t.cos);
    this.sin = heap.allocF32(capacity * half);
    heap.f32(this.sin, capacity * half).set(t.sin);
    this.steerPtr = heap.allocF32(c.hiddenSize);
  }

  get capacity(): number {
    return this.cache.capacity;
  }

  /** Tokens processed since the last reset. */
  get length(): number {
    return this.cache.length;
  }

  /** Forget every position (the buffers are kept). */
  reset(): void {
    this.cache.length = 0;
  }

  /** Steering for the following appends (null: none). Reset before changing it mid-sequence: cached rows keep the old one. */
  setSteering(steer: Steering | null): void {
    if (!steer) {
      this.steerLayer = -1;
      return;
    }
    const c = this.model.config;
    if (!Number.isInteger(steer.layer) || steer.layer < 0 || steer.layer >= c.numLayers) throw new Error(`steering layer ${steer.layer} outside 0..${c.numLayers - 1}`);
    if (steer.vector.length !== c.hiddenSize) throw new Error(`steering vector of length ${steer.vector.length}, hidden size is ${c.hiddenSize}`);
    this.model.ctx.rt.heap.f32(this.steerPtr, c.hiddenSize).set(steer.vector);
    this.steerLayer = steer.layer;
  }

  /**
   * Run `tokens` at positions [length, length + n) and append them to the cache. Returns the logits
   * [vocab] of the last new position, or with `allLogits` those of every new position ([n * vocab]).
   * Long inputs run in chunks of `prefillChunk` rows, so the attention probabilities of one step
   * ([heads, chunk, Tk] floats) stay small; the result is the same as in one piece.
   */
  append(tokens: readonly number[], opts: { allLogits?: boolean } = {}): Float32Array {
    const n = tokens.length;
    if (n === 0) throw new Error("SteeredDecoder.append: no tokens");
    if (this.cache.length + n > this.capacity) throw new Error(`SteeredDecoder: ${this.cache.length + n} positions exceed the cache capacity ${this.capacity}`);
    this.model.checkTokens(tokens, "prompt");
    const V = this.model.config.vocabSize;
    const all = opts.allLogits ? new Float32Array(n * V) : null;
    let last: Float32Array | null = null;
    for (let start = 0; start < n; start += this.prefillChunk) {
      const chunk = tokens.slice(start, start + this.prefillChunk);
      const isLast = start + chunk.length === n;
      if (all) all.set(this.forwardChunk(chunk, true), start * V);
      else if (isLast) last = this.forwardChunk(chunk, false);
      else this.forwardChunk(chunk, null);
    }
    return all ?? last!;
  }

  /** One chunk through every layer; logits of all rows (true), the last row (false) or none (null). */
  private forwardChunk(tokens: readonly number[], allRows: boolean | null): Float32Array {
    const model = this.model;
    const ctx = model.ctx;
    const n = tokens.length;
    const p0 = this.cache.length;
    const logits = ctx.noGrad(() =>
      ctx.rt.heap.scope(() => {
        let h = model.embed(tokens);
        for (let i = 0; i < model.loadedLayers; i++) h = this.layer(i, h, p0);
        if (allRows === null) return new Float32Array(0);
        return model.logits(allRows ? h : sliceRows(h, n - 1, 1)).toArray();
      }),
    );
    this.cache.length = p0 + n;
    return logits;
  }

  /** Decoder layer i on the new rows h [n, d] at positions p0.., reading and extending the cache. */
  private layer(i: number, h: Tensor, p0: number): Tensor {
    const model = this.model;
    const c = model.config;
    const ctx = model.ctx;
    const rt = ctx.rt;
    const n = h.shape[0];
    const Tk = p0 + n;
    const half = c.headDim / 2;
    const tables: RopeTables = {
      cos: new Tensor(ctx, this.cos + p0 * half * 4, [n, half]),
      sin: new Tensor(ctx, this.sin + p0 * half * 4, [n, half]),
    };
    const { q, k, v } = model.attentionInputs(i, h, tables);
    const row = this.cache.rowFloats;
    rt.k.copy(this.cache.keys[i] + p0 * row * 4, k.ptr, n * row);
    rt.k.copy(this.cache.values[i] + p0 * row * 4, v.ptr, n * row);
    const a = empty(ctx, [n, c.numHeads * c.headDim]);
    const probs = rt.heap.allocF32(c.numHeads * n * Tk);
    rt.k.attentionForward(q.ptr, this.cache.keys[i], this.cache.values[i], a.ptr, probs, n, Tk, c.numHeads, c.numKvHeads, c.headDim, 1 / Math.sqrt(c.headDim));
    let out = model.layerOutput(i, h, a);
    if (i === this.steerLayer) out = addRowVector(out, new Tensor(ctx, this.steerPtr, [c.hiddenSize]));
    return out;
  }
}
