// The experiments' forward pass (eval-ab, caa, generate): many token sequences stacked as one [sum T, d] buffer
// (decoder-layer.ts PromptRows) through the steering engine's own pieces: layerForward, the
// LayerStream weights in their stored dtype (resident or streamed, chosen as the engine chooses), and
// the ParallelGemm threads. So every linear map of a layer is one matrix product over all stacked
// rows, and the result is bitwise the same for any thread count and any way the caller splits the
// sequences into batches (every kernel works per row or per sequence; gemmPacked sums each element in
// the same order whatever M). The autodiff model (src/model/qwen3.ts) stays the reference the tests
// compare against.
//
// Nothing is kept for derivatives (allocForwardLayer). Steering is the caller's: run layers 0..S, add
// scale * v to every row of a sequence (addToRows), run S+1..L-1. Decoding appends each pass's keys
// and values to per-sequence caches (allocCache; layerForward's `kv`). The LM head is applied after
// the final RMSNorm to the rows asked for only: for scoring, only the scored tokens' rows of it are
// read (`scoredTokens`, logitsAt); for generation the whole head is kept in its stored dtype (BF16:
// packed into BF16 panels once, at load) or read block by block when it does not fit (`fullHead`,
// allLogitsAt). Resident BF16 layers are packed into BF16 panels as they are read (LayerStream's
// prepack), so no product packs them again: bitwise the same products, measured 1.5x (24 rows) and 2x
// (one row) on the 0.6B shape's decoding.
import type { Runtime } from "../runtime/runtime.js";
import type { Qwen3Config } from "../model/config.js";
import { MAX_WEIGHT_BYTES, WeightError, canReadRows, type RowReadableTensorSource, type TensorSource } from "../model/weights.js";
import { ropeTables } from "../kernels/rope.js";
import { packBt, packedFloats, type PackedMatrix } from "../kernels/matmul.js";
import { loadLayerNorms, loadVector, readEmbeddingRows, type LayerNorms } from "./layer-weights.js";
import { DT_BF16, DT_BF16_PANELS, LayerStream, PACK_BT, readStored, storedLayout, yieldToEventLoop } from "./weight-store.js";
import { allocForwardLayer, forwardLayerFloats, layerDims, layerForward, type LayerContext, type LayerDims, type LayerKv, type PromptRows } from "./decoder-layer.js";
import { SerialGemm, type ParallelGemm } from "./parallel-gemm.js";
import { fmtGiB, planLayerWeights, type WeightMode, type WeightPlan } from "./steering-engine.js";

export interface ForwardOptions {
  /** Where matrix products run (default: this thread). close() closes it. */
  gemm?: ParallelGemm;
  log?: (line: string) => void;
  /** Layers 0..layers-1 held resident (read once) or streamed (read per pass); default auto. */
  weights?: WeightMode;
  /** Most bytes `auto` lets resident layers take (default: the engine's DEFAULT_RESIDENT_BUDGET). */
  residentBudgetBytes?: number;
  /** Run layers 0..layers-1 only (default: all): caa reads layer S and needs no more. */
  layers?: number;
  /** Token ids whose logits logitsAt gives: only their LM-head rows are read (with the final norm). */
  scoredTokens?: readonly number[];
  /**
   * Keep the whole LM head in its stored dtype (generation needs every logit): allLogitsAt packs it
   * block by block on the threads that multiply it, as the layers' weights are.
   */
  fullHead?: boolean;
  /** The whole head resident, or read block by block from the checkpoint every call (default auto: see HEAD_RESERVE). */
  headMode?: "auto" | "resident" | "stream";
}

/** Key/value caches of every layer for decoding (ForwardModel.allocCache), and where each sequence stands. */
export interface ForwardCache {
  /** Per layer: [sum of capacities, kvDim] keys and values. */
  layers: readonly LayerKv[];
  /** Per sequence: first row in the caches, and its capacity (positions). */
  cacheRow: readonly number[];
  capacity: readonly number[];
}

/** LM-head rows packed per dispatch in allLogitsAt: bounds the packed scratch (16 MiB at d = 1024). */
const HEAD_BLOCK = 4096;

interface FullHead {
  /** The head's bytes (0 when streamed; BF16 in panels, DT_BF16_PANELS), their dtype code, and the packed scratch of one block. */
  raw: number;
  dtype: number;
  bytesPerElement: number;
  scratch: number;
  /** Streamed: HEAD_BLOCK rows at a time read as f32 into `staging` every call (the head's tensor name). */
  stream: { name: string; staging: number } | null;
}

/**
 * Wasm memory left beside the weights for a generation's caches and activations: a whole LM head
 * stays resident only when the layers' bytes, the head's and this fit MAX_WEIGHT_BYTES. The 14B
 * shape's head (1.56 GB in BF16) beside its streamed layers' 1.9 GiB does not (the 24 sequences' KV
 * caches then ran out of the 4 GiB); it is read block by block each step instead.
 */
const HEAD_RESERVE = 2 ** 30;

/** Activation memory an experiment's batch may take by default (hidden states and one layer's buffers). */
export const DEFAULT_ACTIVATION_BUDGET = 768 * 2 ** 20;

export class ForwardModel {
  private closed = false;

  private constructor(
    readonly rt: Runtime,
    readonly config: Qwen3Config,
    private readonly source: TensorSource,
    readonly gemm: ParallelGemm,
    readonly dims: LayerDims,
    private readonly stream: LayerStream,
    private readonly norms: readonly LayerNorms[],
    /** model.norm.weight [d]; 0 without a head (neither scored tokens nor fullHead). */
    private readonly finalNorm: number,
    /** The scored tokens' LM-head rows, packed for x W^T; null without scored tokens. */
    private readonly head: PackedMatrix | null,
    readonly scoredTokens: readonly number[],
    readonly weightPlan: WeightPlan,
    private readonly fullHead: FullHead | null,
  ) {}

  /**
   * Plan the weights (refusing, with one line, what cannot fit), allocate their slots, norms and the
   * scored head rows on rt.heap (kept until the runtime is dropped; released again if loading fails).
   */
  static async create(rt: Runtime, config: Qwen3Config, source: TensorSource, opts: ForwardOptions = {}): Promise<ForwardModel> {
    const layers = opts.layers ?? config.numLayers;
    if (!Number.isInteger(layers) || layers < 1 || layers > config.numLayers) throw new Error(`ForwardModel: layers ${layers} outside 1..${config.numLayers}`);
    // Tied embeddings: lm_head.weight when present, else the embedding matrix (CONTRACT.md section 1).
    const headName = source.has("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
    const scratchBytes = 4 * packedFloats(HEAD_BLOCK, config.hiddenSize);
    // (+ up to 7 rows of zeros when a BF16 head is packed into panels)
    const headBytes = opts.fullHead && source.has(headName) ? storedLayout(source, headName).bytes + 16 * config.hiddenSize + scratchBytes : 0;
    let plan = planLayerWeights(config, source, 0, layers - 1, { ...opts, prepack: true, extra: headBytes ? { bytes: headBytes, what: "the whole LM head (generation)" } : undefined });
    const layerBytes = (p: WeightPlan) => (p.mode === "resident" ? p.residentBytes : p.streamBytes);
    const streamHead = headBytes > 0 && canReadRows(source) && opts.headMode !== "resident" &&
      (opts.headMode === "stream" || layerBytes(plan) + headBytes + HEAD_RESERVE > MAX_WEIGHT_BYTES);
    if (streamHead) {
      // Staging for one block of rows as f32, and the block's packed scratch.
      plan = planLayerWeights(config, source, 0, layers - 1, { ...opts, prepack: true, extra: { bytes: 2 * scratchBytes, what: "the LM head's streamed block" } });
    }
    const log = opts.log ?? (() => {});
    const start = rt.heap.mark();
    try {
      const norms = Array.from({ length: layers }, (_, i) => loadLayerNorms(rt, config, source, i));
      const resident = plan.mode === "resident";
      // Resident layers are packed into BF16 panels once, as they are read (LayerStream's prepack).
      const stream = new LayerStream(rt, config, source, 0, layers - 1, resident ? Math.max(2, layers) : 2, resident);
      const scored = [...new Set(opts.scoredTokens ?? [])];
      let finalNorm = 0, head: PackedMatrix | null = null, full: FullHead | null = null;
      if (scored.length || opts.fullHead) {
        finalNorm = loadVector(rt, source, "model.norm.weight", config.hiddenSize);
        const name = headName;
        if (name !== "lm_head.weight" && !config.tieWordEmbeddings) throw new WeightError(`missing tensor "lm_head.weight" in ${source.describe("lm_head.weight")} (tie_word_embeddings is false)`);
        if (scored.length) {
          for (const t of scored) if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) throw new Error(`ForwardModel: scored token ${t} outside the vocabulary [0, ${config.vocabSize})`);
          const rows = rt.heap.allocF32(scored.length * config.hiddenSize);
          readEmbeddingRows(rt, config, source, scored, rows, name);
          head = packBt(rt, rows, scored.length, config.hiddenSize);
        }
        if (opts.fullHead) {
          const shape = source.shape(name);
          if (shape.length !== 2 || shape[0] !== config.vocabSize || shape[1] !== config.hiddenSize) throw new WeightError(`tensor "${name}" in ${source.describe(name)} has shape [${shape.join(", ")}], expected [${config.vocabSize}, ${config.hiddenSize}]`);
          const scratch = rt.heap.allocF32(packedFloats(HEAD_BLOCK, config.hiddenSize));
          if (streamHead) {
            full = { raw: 0, dtype: 0, bytesPerElement: 4, scratch, stream: { name, staging: rt.heap.allocF32(HEAD_BLOCK * config.hiddenSize) } };
            log(`forward: the LM head (${fmtGiB(headBytes - scratchBytes)} stored) is read from the checkpoint ${HEAD_BLOCK} rows at a time at every step: kept whole beside the layers it would leave too little memory for the caches`);
          } else {
            const layout = storedLayout(source, name);
            const d = config.hiddenSize, V = config.vocabSize;
            // BF16: packed in place into BF16 panels, block by block through the scratch (a block's
            // panels take its rows' bytes; the last, short one up to 7 rows of zeros more).
            const panels = layout.dtype === DT_BF16;
            const raw = rt.heap.alloc(panels ? Math.ceil(V / 8) * 8 * d * 2 : layout.bytes);
            await readStored(rt, source, name, raw);
            if (panels) {
              for (let b0 = 0; b0 < V; b0 += HEAD_BLOCK) {
                const n = Math.min(HEAD_BLOCK, V - b0), at = raw + b0 * d * 2;
                rt.k.copy(scratch, at, (n * d) / 2);
                rt.k.packPanelsBf16(scratch, PACK_BT, d, 0, n, d, at);
              }
            }
            full = { raw, dtype: panels ? DT_BF16_PANELS : layout.dtype, bytesPerElement: layout.bytes / layout.elements, scratch, stream: null };
          }
        }
      }
      log(
        resident
          ? `forward: weights resident: layers 0..${layers - 1} in their stored dtype, read once (${fmtGiB(plan.residentBytes)} with the packed panels); threads ${(opts.gemm?.threads ?? 1)}`
          : `forward: weights streamed from the checkpoint every pass in their stored dtype (${fmtGiB(plan.streamBytes)} of slots and panels; resident layers 0..${layers - 1} would take ${fmtGiB(plan.residentBytes)}); threads ${(opts.gemm?.threads ?? 1)}`,
      );
      return new ForwardModel(rt, config, source, opts.gemm ?? new SerialGemm(rt), layerDims(config), stream, norms, finalNorm, head, scored, plan, full);
    } catch (e) {
      rt.heap.release(start);
      throw e;
    }
  }

  get threads(): number {
    return this.gemm.threads;
  }

  /** Layers it runs: 0..numLayers-1. */
  get numLayers(): number {
    return this.norms.length;
  }

  /** The streamed layers' slots, for their read statistics (reads, bytesRead, waitSeconds). */
  get reads(): { reads: number; bytesRead: number; waitSeconds: number } {
    return this.stream;
  }

  /** Floats a sequence of T tokens (after `past` cached ones) takes in a pass: its hidden state and one layer's buffers. */
  sequenceFloats(T: number, past = 0): number {
    return T * this.dims.d + forwardLayerFloats(this.dims, T, past);
  }

  /** Embedding rows of `tokens` into dst [tokens.length, d]. */
  embed(tokens: readonly number[], dst: number): void {
    readEmbeddingRows(this.rt, this.config, this.source, tokens, dst);
  }

  /** vec [d] added to rows row..row+T-1 of h [., d]: the steering of one sequence. */
  addToRows(h: number, row: number, T: number, vec: number): void {
    const p = h + 4 * row * this.dims.d;
    this.rt.k.addRowVector(p, vec, p, T, this.dims.d);
  }

  /**
   * Layers from..to on the sequences stacked in h ([sum lengths, d], sequence s at the rows after
   * those of sequences 0..s-1), in place. `next`: the layer the following pass starts with (read
   * ahead when streaming; default `from`, the next batch of a chunked run). With `cache` (decoding),
   * sequence s's rows are its positions past[s].. and their keys and values are appended to its
   * cache rows (`seqs[s]`: its index in the cache). Its buffers live in a heap scope of this call.
   */
  async run(h: number, lengths: readonly number[], from: number, to: number, opts: { next?: number | null; cache?: ForwardCache; seqs?: readonly number[]; past?: readonly number[] } = {}): Promise<void> {
    const next = opts.next === undefined ? from : opts.next;
    const cache = opts.cache;
    if (this.closed) throw new Error("ForwardModel: closed");
    if (from < 0 || to >= this.numLayers) throw new Error(`ForwardModel.run: layers ${from}..${to} outside 0..${this.numLayers - 1}`);
    if (from > to || lengths.length === 0) return;
    const { rt, dims } = this;
    const prompts: PromptRows[] = [];
    let rows = 0, probFloats = 0, maxT = 0;
    lengths.forEach((T, i) => {
      if (!Number.isInteger(T) || T < 1) throw new Error(`ForwardModel.run: sequence of ${T} tokens`);
      const p: PromptRows = { row: rows, T, probs: probFloats };
      if (cache) {
        const sq = opts.seqs?.[i] ?? i, past = opts.past?.[i] ?? 0;
        if (past + T > cache.capacity[sq]!) throw new Error(`ForwardModel.run: sequence ${sq}: ${past + T} positions exceed its cache capacity ${cache.capacity[sq]}`);
        p.past = past;
        p.cacheRow = cache.cacheRow[sq]!;
      }
      prompts.push(p);
      rows += T;
      probFloats += dims.H * T * ((p.past ?? 0) + T);
      maxT = Math.max(maxT, (p.past ?? 0) + T);
    });
    const heap = rt.heap;
    const mark = heap.mark();
    try {
      const { cos, sin } = ropeTables(Array.from({ length: maxT }, (_, t) => t), dims.hd, this.config.ropeTheta);
      const cosPtr = heap.allocF32(cos.length), sinPtr = heap.allocF32(sin.length);
      heap.f32(cosPtr, cos.length).set(cos);
      heap.f32(sinPtr, sin.length).set(sin);
      const ctx: LayerContext = { rt, dims, gemm: this.gemm, prompts, rows, cos: cosPtr, sin: sinPtr, attnScratch: 0 };
      const saved = allocForwardLayer(rt, dims, rows, probFloats, h);
      for (let i = from; i <= to; i++) {
        // Between layers: signals and I/O callbacks run even when every product runs on this thread.
        await yieldToEventLoop();
        const staged = await this.stream.acquire(i, i < to ? i + 1 : next);
        await layerForward(ctx, { index: i, norms: this.norms[i]!, fwd: staged.fwd, bwd: null }, saved, h, cache?.layers[i]);
      }
    } finally {
      heap.release(mark);
    }
  }

  /**
   * The scored tokens' logits at rows `rows` of h [., d] (each after the last layer): the final
   * RMSNorm of those rows, then the scored LM-head rows only. [rows.length, scoredTokens.length],
   * columns in scoredTokens order (column(id)).
   */
  logitsAt(h: number, rows: readonly number[]): Promise<Float32Array> {
    const head = this.head;
    if (!head) throw new Error("ForwardModel.logitsAt: no scored tokens were loaded");
    return this.headProducts(h, rows, head.n, async (x, out) => {
      await this.gemm.run([{ a: x, m: rows.length, packed: head, c: out }]);
    });
  }

  /**
   * Every logit at rows `rows` of h [., d]: the final RMSNorm of those rows, then the whole LM head
   * (ForwardOptions.fullHead): BF16 panels packed at load, all at once; other dtypes packed
   * HEAD_BLOCK rows at a time (or read directly, all at once, for a row or two); streamed, read
   * HEAD_BLOCK rows at a time. [rows.length, vocab].
   */
  allLogitsAt(h: number, rows: readonly number[]): Promise<Float32Array> {
    const full = this.fullHead;
    if (!full) throw new Error("ForwardModel.allLogitsAt: the model was made without fullHead");
    const d = this.dims.d, V = this.config.vocabSize;
    // A row or two (decoding one sequence): every slice reads the stored head directly and never packs
    // into the scratch, so the whole head is one dispatch, not V / HEAD_BLOCK round trips to the
    // workers; bitwise the same logits, as the slicing never changes a result.
    // Streamed, a block is read (as f32: the same values the stored dtype converts to) before its product.
    // BF16 panels (a resident BF16 head, packed at load) are never packed again: one dispatch too.
    const block = (rows.length <= this.rt.k.directMaxRows() || full.dtype === DT_BF16_PANELS) && !full.stream ? V : HEAD_BLOCK;
    const source = this.source;
    return this.headProducts(h, rows, V, async (x, out) => {
      for (let b0 = 0; b0 < V; b0 += block) {
        const n = Math.min(block, V - b0);
        let src = full.raw + b0 * d * full.bytesPerElement;
        if (full.stream) {
          (source as RowReadableTensorSource).readRowsF32(full.stream.name, b0, n, this.rt.heap.f32(full.stream.staging, n * d));
          src = full.stream.staging;
        }
        await this.gemm.run([{
          a: x, m: rows.length, c: out + 4 * b0, ldc: V,
          packed: { ptr: full.scratch, n, k: d },
          pack: { src, kind: PACK_BT | (full.dtype << 1), ld: d },
        }]);
      }
    });
  }

  /** The final RMSNorm of rows `rows` of h into x [n, d], then `product(x, out)` into out [n, cols], copied out. */
  private async headProducts(h: number, rows: readonly number[], cols: number, product: (x: number, out: number) => Promise<void>): Promise<Float32Array> {
    const { rt } = this;
    const d = this.dims.d, n = rows.length;
    const heap = rt.heap;
    const mark = heap.mark();
    try {
      const x = heap.allocF32(n * d), rstd = heap.allocF32(n), out = heap.allocF32(n * cols);
      rows.forEach((r, i) => rt.k.copy(x + 4 * i * d, h + 4 * r * d, d));
      rt.k.rmsnormForward(x, this.finalNorm, x, rstd, n, d, this.dims.eps);
      await product(x, out);
      return heap.f32(out, n * cols).slice();
    } finally {
      heap.release(mark);
    }
  }

  /**
   * Key/value caches of every layer for sequences of the given capacities (positions), allocated on
   * rt.heap in the caller's region.
   */
  allocCache(capacities: readonly number[]): ForwardCache {
    const cacheRow: number[] = [];
    let rows = 0;
    for (const c of capacities) cacheRow.push(rows), (rows += c);
    const kv = this.dims.kvDim;
    const layers = this.norms.map(() => ({ k: this.rt.heap.allocF32(rows * kv), v: this.rt.heap.allocF32(rows * kv) }));
    return { layers, cacheRow, capacity: [...capacities] };
  }

  /** Column of token `id` in logitsAt's result. */
  column(id: number): number {
    const c = this.scoredTokens.indexOf(id);
    if (c < 0) throw new Error(`ForwardModel: token ${id} is not among the scored tokens`);
    return c;
  }

  /** Stop the worker threads. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.gemm.close();
  }
}

/**
 * Consecutive groups of items whose floats (floatsOf) sum to at most `budget` (an item larger than
 * the budget alone): how a run is cut into batches that keep memory bounded. The results do not
 * depend on the cut (see the top of this file).
 */
export function chunkByBudget<T>(items: readonly T[], floatsOf: (item: T) => number, budget: number): T[][] {
  const out: T[][] = [];
  let cur: T[] = [], used = 0;
  for (const it of items) {
    const f = floatsOf(it);
    if (cur.length && used + f > budget) {
      out.push(cur);
      cur = [], used = 0;
    }
    cur.push(it);
    used += f;
  }
  if (cur.length) out.push(cur);
  return out;
}
