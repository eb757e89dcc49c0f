// The steering Jacobian J = d target / d sv (the steering site and target of the README's "What is
// computed") without an autodiff graph: the fast path for solvers. Same quantity as
// src/jacobian/steering-jacobian.ts, which stays the reference the tests compare against.
//
// Memory plan (one wasm32 memory, 4 GiB):
//   - Embedding: only the prompts' rows are read (the whole matrix only briefly when the source
//     cannot read rows).
//   - Layers 0..S do not depend on sv: each runs ONCE for all prompts, one layer at a time, streamed
//     through weight-store.ts's staging slots; nothing of them is kept.
//   - Layers S+1..T: their stored bytes resident (read once) or streamed (read per pass), packed per
//     product either way: weight-store.ts; chosen by their size.
//     The forward at sv0 runs once and keeps what the derivatives read (decoder-layer.ts SavedLayer).
// Products:
//   - J V for a block of n vectors: the n tangents of every prompt are stacked as segments of one
//     [n sum T_p, d] batch, so each linear layer is one matrix-matrix product (M = n sum T_p) instead
//     of n matrix-vector ones. The tangent entering layer S+1 is v_j on every row.
//   - J^T U: the batched VJP with the cotangent in the last K rows of each segment (zeros elsewhere);
//     the result for vector j is the sum over all rows of its segments at layer S+1's input.
//   - J^T J V: J V, then its non-target rows zeroed and the VJP run on the same buffer.
// Products are async (the matrix products may run on worker threads, reads overlap them) and run
// one at a time: a product's buffers live in a heap region released when it ends.
import type { Runtime } from "../runtime/runtime.js";
import type { Qwen3Config } from "../model/config.js";
import { MAX_WEIGHT_BYTES, WeightError, type TensorSource } from "../model/weights.js";
import { ropeTables } from "../kernels/rope.js";
import { validateSite, type SteeringSite } from "../jacobian/steering-jacobian.js";
import { resolvePositions, type ResolvedPositions } from "../jacobian/positions.js";
import { loadLayerNorms, readEmbeddingRows, type EngineLayer, type LayerNorms } from "./layer-weights.js";
import { LayerStream, layerStreamBytes, yieldToEventLoop } from "./weight-store.js";
import {
  allocBatchBuffers,
  allocSavedLayer,
  layerDims,
  layerForward,
  layerJvp,
  layerVjp,
  type BatchBuffers,
  type CompactRows,
  type CompactSegment,
  type LayerContext,
  type PromptRows,
  type SavedLayer,
  type Segment,
} from "./decoder-layer.js";
import { SerialGemm, type ParallelGemm } from "./parallel-gemm.js";
import { steeredPass, type SteeredResult } from "./steered-pass.js";

/** How layers S+1..T are held: `auto` picks resident when they fit `residentBudgetBytes`. */
export type WeightMode = "auto" | "resident" | "stream";

/**
 * Default budget for resident layers S+1..T (their stored bytes): the 0.6B shape's 0.42 GB and the
 * 1.7B shape's 1.6 GB (S 6, T 22) fit; the 8B shape's 3.1 GB (S 13, T 21) and the 14B shape's 14.5 GB stream.
 */
export const DEFAULT_RESIDENT_BUDGET = 2 * 2 ** 30;

export interface SteeringEngineOptions {
  /** Where matrix products run (default: this thread). The engine closes it in close(). */
  gemm?: ParallelGemm;
  /** Progress lines (loading), e.g. to stderr. */
  log?: (line: string) => void;
  /** Resident or streamed layers S+1..T (default auto). */
  weights?: WeightMode;
  /** Most bytes `auto` lets resident layers take (default DEFAULT_RESIDENT_BUDGET). */
  residentBudgetBytes?: number;
}

/** What the engine decided about its weights, and what they cost. */
export interface WeightPlan {
  mode: "resident" | "stream";
  /** Bytes of layers S+1..T's slots and the packed-panel scratch when resident (whether or not they are). */
  residentBytes: number;
  /** Bytes of the two staging slots and the packed-panel scratch when streaming. */
  streamBytes: number;
}

const GiB = 2 ** 30;
export const fmtGiB = (b: number) => (b >= GiB ? `${(b / GiB).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`);

/**
 * The block size block Lanczos uses on this engine unless told otherwise. A block of b vectors is one
 * product whose matrix products have M = b * (sum of the prompts' tokens) rows. Smaller blocks reach the
 * same residual with fewer products in all (measured, top 12 at --tol 1e-3 on a 48-token prompt: the
 * 0.6B shape needs 156 products with blocks of 12, 114 with 6, 104 with 4, 93 with 3, 82 with 2; the
 * 1.7B shape 180 with 12, 120 with 4, 90 with 2, 82 with 1), but each product packs every weight it
 * multiplies (about 25% of the multiply at 64 rows, 15% at 96, 3% at 256: bench/results/matmul.md) and,
 * when streaming, reads every layer again. On the 1.7B shape blocks of 1, 2 and 4 took the same wall time
 * (245, 254, 260 s against 6.0 min with 12); the wider of them keeps streamed reads per vector low. So:
 * the fewest vectors that give AUTO_BLOCK_ROWS rows, at least 2 (a block of 1 finds a repeated singular
 * value's copies only through rounding), at most numVectors.
 */
export const AUTO_BLOCK_ROWS = 192;
export function autoBlockSize(numVectors: number, prompts: readonly (readonly unknown[])[]): number {
  const rows = prompts.reduce((s, p) => s + p.length, 0);
  return Math.min(numVectors, Math.max(2, Math.ceil(AUTO_BLOCK_ROWS / Math.max(1, rows))));
}

export class SteeringEngine {
  /** Length of sv (hidden size). */
  readonly inputDim: number;
  /** Length of J v: the selected target rows of every prompt times d (prompts * K * d for the last K). */
  readonly outputDim: number;
  /** The target rows (and weights) of each prompt. */
  readonly selections: readonly ResolvedPositions[];
  /** Where each prompt's part starts in J v. */
  private readonly offsets: number[];
  /** J^T J v products done (a block of n counts n). */
  products = 0;
  /** Seconds spent building the engine: embedding rows, layers 0..S, packing and forward of S+1..T. */
  readonly loadSeconds: { embedding: number; prefix: number; suffix: number };
  /** Resident or streamed layers, and their memory. */
  readonly weightPlan: WeightPlan;

  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly rt: Runtime,
    readonly config: Qwen3Config,
    readonly prompts: readonly (readonly number[])[],
    readonly site: SteeringSite,
    private readonly ctx: LayerContext,
    private readonly layers: readonly KeptLayer[],
    private readonly saved: readonly SavedLayer[],
    /** Output of layer S without steering [sum T_p, d]: where every point's forward starts. */
    private readonly base: number,
    /** Output of layer T [sum T_p, d]. */
    private readonly output: number,
    loadSeconds: { embedding: number; prefix: number; suffix: number },
    /** The slots of layers S+1..T (null when S = T). */
    private readonly slots: LayerStream | null,
    weightPlan: WeightPlan,
    /** A view made by restrict(): it shares its parent's buffers and threads, and close() leaves them. */
    private readonly isView = false,
  ) {
    this.loadSeconds = loadSeconds;
    this.weightPlan = weightPlan;
    const d = config.hiddenSize;
    this.inputDim = d;
    this.selections = prompts.map((p, i) => resolvePositions(site.positions, p.length, `prompt ${i + 1}`));
    this.offsets = [];
    let off = 0;
    for (const sel of this.selections) {
      this.offsets.push(off);
      off += sel.rows.length * d;
    }
    this.outputDim = off;
  }

  /** Threads the matrix products run on. */
  get threads(): number {
    return this.ctx.gemm.threads;
  }

  /**
   * Load layers 0..T of `source` for the prompts and site, run the forward pass at sv0 once, and keep
   * what the products need. Allocates on rt.heap (never released: the engine lives for the session).
   */
  static async create(
    rt: Runtime,
    config: Qwen3Config,
    source: TensorSource,
    prompts: readonly (readonly number[])[],
    site: SteeringSite,
    opts: SteeringEngineOptions = {},
  ): Promise<SteeringEngine> {
    validateSite(config, prompts, site);
    const plan = planWeights(config, source, site, opts);
    const start = rt.heap.mark();
    try {
      return await SteeringEngine.build(rt, config, source, prompts, site, opts, plan);
    } catch (e) {
      rt.heap.release(start); // a failed load (bad tensor, out of memory) leaves the heap as it was
      throw e;
    }
  }

  private static async build(
    rt: Runtime,
    config: Qwen3Config,
    source: TensorSource,
    prompts: readonly (readonly number[])[],
    site: SteeringSite,
    opts: SteeringEngineOptions,
    plan: WeightPlan,
  ): Promise<SteeringEngine> {
    const gemm = opts.gemm ?? new SerialGemm(rt);
    const log = opts.log ?? (() => {});
    const dims = layerDims(config);
    const { d, H } = dims;
    const S = site.sourceLayer, Tl = site.targetLayer;
    const heap = rt.heap;

    const rowsOf: PromptRows[] = [];
    let rows = 0, probFloats = 0, maxT = 0;
    for (const p of prompts) {
      rowsOf.push({ row: rows, T: p.length, probs: probFloats });
      rows += p.length;
      probFloats += H * p.length * p.length;
      maxT = Math.max(maxT, p.length);
    }
    const { cos, sin } = ropeTables(Array.from({ length: maxT }, (_, t) => t), dims.hd, config.ropeTheta);
    const cosPtr = heap.allocF32(cos.length), sinPtr = heap.allocF32(sin.length);
    heap.f32(cosPtr, cos.length).set(cos);
    heap.f32(sinPtr, sin.length).set(sin);
    const ctx: LayerContext = {
      rt, dims, gemm, prompts: rowsOf, rows, cos: cosPtr, sin: sinPtr,
      attnScratch: rt.k.attentionScratchFloats(maxT, maxT, dims.H, dims.KV, dims.hd) as number,
    };

    // The stacked hidden state; embeddings first, so a whole-matrix fallback read is freed at once.
    const h = heap.allocF32(rows * d);
    const t0 = performance.now();
    readEmbeddingRows(rt, config, source, prompts.flat(), h);
    const loadSeconds = { embedding: (performance.now() - t0) / 1000, prefix: 0, suffix: 0 };

    // Kept for the session: norms of layers S+1..T, their saved primal, the output of T, and their
    // weights' slots: one per layer (resident) or two that every pass reuses (stream).
    const resident = plan.mode === "resident";
    const layers: KeptLayer[] = [];
    const saved: SavedLayer[] = [];
    for (let i = S + 1; i <= Tl; i++) {
      layers.push({ index: i, norms: loadLayerNorms(rt, config, source, i) });
      saved.push(allocSavedLayer(rt, dims, rows, probFloats));
    }
    // Layer T's output has its own buffer even when S = T: h keeps layer S's unsteered output, from
    // which moveTo() runs layers S+1..T again at another point.
    const output = heap.allocF32(rows * d);
    const kept = Tl > S ? (resident ? new LayerStream(rt, config, source, S + 1, Tl, Math.max(2, Tl - S)) : new LayerStream(rt, config, source, 0, Tl)) : null;
    log(
      resident
        ? `engine: weights resident: layers ${S + 1}..${Tl} in their stored dtype, read once (${fmtGiB(plan.residentBytes)} with the packed panels)`
        : `engine: weights streamed from the checkpoint each pass in their stored dtype (${fmtGiB(plan.streamBytes)} of slots and panels; resident layers ${S + 1}..${Tl} would take ${fmtGiB(plan.residentBytes)})`,
    );

    const mark = heap.mark();
    let engine: SteeringEngine;
    try {
      // Layers 0..S go through two slots: the streamed layers' own, or (resident) two released with this scope.
      const prefix = resident || !kept ? new LayerStream(rt, config, source, 0, S) : kept;
      // Prefix layers 0..S: streamed, run once.
      const prefixSaved = allocSavedLayer(rt, dims, rows, probFloats, h);
      const prefixMark = heap.mark();
      for (let i = 0; i <= S; i++) {
        const staged = await prefix.acquire(i, i + 1 <= Tl ? i + 1 : null);
        const layer: EngineLayer = { index: i, norms: loadLayerNorms(rt, config, source, i), fwd: staged.fwd, bwd: null };
        await layerForward(ctx, layer, prefixSaved, h);
        heap.release(prefixMark);
        await yieldToEventLoop();
      }
      loadSeconds.prefix = (performance.now() - t0) / 1000 - loadSeconds.embedding;
      log(`engine: layers 0..${S} run once for ${prompts.length} prompt(s) (${loadSeconds.prefix.toFixed(1)} s)`);
      engine = new SteeringEngine(rt, config, prompts, site, ctx, layers, saved, h, output, loadSeconds, kept, plan);
      const t1 = performance.now();
      await engine.forwardAt(site.at ?? null);
      loadSeconds.suffix = (performance.now() - t1) / 1000;
      if (layers.length) log(`engine: layers ${S + 1}..${Tl} read and run at sv0 (${loadSeconds.suffix.toFixed(1)} s)`);
    } finally {
      heap.release(mark);
    }
    return engine;
  }

  /**
   * Move the point the engine linearises at to sv0 = sv (null: zero): layers S+1..T run forward again
   * from the kept output of layer S, saving what the products read, so targets(), applyJ, applyJt and
   * normalProducts are then at sv. MELBO's gradient ascent moves it every step (the nonlinear forward
   * at each point, then one VJP).
   */
  async moveTo(sv: ArrayLike<number> | null): Promise<void> {
    if (sv) this.checkBlock([sv], this.inputDim, "moveTo");
    else if (this.closed) throw new Error("moveTo: the engine is closed");
    // A view shares its parent's saved forward: moving it would move the parent (and its other views).
    if (this.isView) throw new Error("moveTo: not on a view made by restrict()");
    return this.exclusive(() => this.forwardAt(sv));
  }

  /**
   * Norm of every row of layer S's unsteered output (every position of every prompt, in prompt order):
   * the scale MELBO's default radius is taken from.
   */
  sourceNorms(): number[] {
    return this.rowNorms(this.base);
  }

  private rowNorms(ptr: number): number[] {
    const d = this.inputDim;
    const view = this.rt.heap.f32(ptr, this.ctx.rows * d);
    return Array.from({ length: this.ctx.rows }, (_, r) => {
      let s = 0;
      for (let j = 0; j < d; j++) s += view[r * d + j]! * view[r * d + j]!;
      return Math.sqrt(s);
    });
  }

  /** Target activations per prompt at the current point (sv0, or moveTo's; selected rows, weights applied; K*d each for the last K). */
  targets(): Float32Array[] {
    return this.ctx.prompts.map((p, i) => this.gatherTarget(this.output + 4 * p.row * this.inputDim, this.selections[i]!));
  }

  /** J v for each v in V: prompts' parts concatenated (length outputDim each). */
  async applyJ(V: readonly ArrayLike<number>[]): Promise<Float32Array[]> {
    this.checkBlock(V, this.inputDim, "applyJ");
    return this.exclusive(async () => {
      const b = this.batch(V.length);
      this.fillTangents(V, b);
      await this.jvp(b);
      return this.readTargets(V.length, b);
    });
  }

  /** J^T u for each u in U (length outputDim each; the prompts' parts summed). */
  async applyJt(U: readonly ArrayLike<number>[]): Promise<Float64Array[]> {
    this.checkBlock(U, this.outputDim, "applyJt");
    return this.exclusive(async () => {
      const b = this.batch(U.length);
      this.fillCotangents(U, b);
      await this.vjp(b);
      return this.sumSegments(U.length, b);
    });
  }

  /** J^T J v for each v in V, summed over prompts. */
  async normalProducts(V: readonly ArrayLike<number>[]): Promise<Float64Array[]> {
    this.checkBlock(V, this.inputDim, "normalProducts");
    return this.exclusive(async () => {
      const b = this.batch(V.length);
      this.fillTangents(V, b);
      await this.jvp(b);
      this.weightTargetsTwice(b);
      await this.vjp(b);
      this.products += V.length;
      return this.sumSegments(V.length, b);
    });
  }

  /**
   * J_T' V at every target T' of `targets` (ascending inside (S, T], the last one T: restrict() to end
   * there) from ONE JVP through S+1..T: the tangent of layer T' is on its way to T, so its target rows
   * are copied out as the pass crosses it. The atlas's full-Jacobian path (src/atlas/full-jacobian.ts)
   * takes every target of a source from d such passes. Images are in applyJ's layout, equal to
   * applyJ of restrict(S, T') up to float32 rounding (layer T' runs on all rows here, on the target
   * rows only there); tested.
   */
  async applyJAtTargets(V: readonly ArrayLike<number>[], targets: readonly number[]): Promise<Float32Array[][]> {
    this.checkBlock(V, this.inputDim, "applyJAtTargets");
    const S = this.site.sourceLayer, T = this.site.targetLayer;
    targets.forEach((t, i) => {
      if (!Number.isInteger(t) || t <= S || t > T || (i > 0 && t <= targets[i - 1]!)) throw new RangeError(`applyJAtTargets: targets must ascend inside (${S}, ${T}], got ${targets.join(",")}`);
    });
    if (targets.at(-1) !== T) throw new RangeError(`applyJAtTargets: the last target must be the engine's target ${T} (restrict() to end there)`);
    return this.exclusive(async () => {
      const n = V.length, d = this.inputDim, rt = this.rt;
      const b = this.batch(n);
      // Compact target rows of every T' below T, in the layout of b.targets (T's own is b.targets).
      const bufOf = new Map<number, number>();
      for (const t of targets.slice(0, -1)) bufOf.set(t - S - 1, rt.heap.allocF32(b.targets.rows * d));
      this.fillTangents(V, b);
      await this.jvp(b, (l) => {
        const buf = bufOf.get(l);
        if (buf !== undefined) moveTargetRows(rt, { ...b.targets, buf }, b.th, true, d);
      });
      return targets.map((t) => this.readTargets(n, b, t === T ? b.targets.buf : bufOf.get(t - S - 1)!));
    });
  }

  /**
   * The engine of the pair (S', T') inside this one's span, S <= S' < T' <= T, at sv0 = 0: the forward
   * at sv0 does not depend on where the steering enters, so the pair reuses the forward this engine
   * ran (layers S'+1..T' of it) and the weights it holds; nothing is read or run. Its products are
   * bitwise those of an engine created for (S', T') (the same kernels on the same saved primal).
   * An atlas of layer pairs pays for one forward. Products of a view and of its parent must not
   * overlap (run them one after the other); closing a view leaves the parent's threads running.
   */
  restrict(source: number, target: number): SteeringEngine {
    const S = this.site.sourceLayer, T = this.site.targetLayer;
    if (this.site.at) throw new Error("SteeringEngine.restrict: only at sv0 = 0 (the forward at another point depends on S)");
    if (!(Number.isInteger(source) && Number.isInteger(target) && S <= source && source < target && target <= T)) throw new RangeError(`SteeringEngine.restrict: (${source}, ${target}) is not inside (${S}, ${T}) with S < T`);
    const from = source - S, to = target - S;
    const output = target === T ? this.output : this.saved[to]!.hIn;
    return new SteeringEngine(this.rt, this.config, this.prompts, { ...this.site, sourceLayer: source, targetLayer: target }, this.ctx, this.layers.slice(from, to), this.saved.slice(from, to), from === 0 ? this.base : this.saved[from]!.hIn, output, this.loadSeconds, this.slots, this.weightPlan, true);
  }

  /**
   * The nonlinear pass at steered points (linearity, dct): for each point p_j, layers S+1..T run on
   * the layer-S output plus sv0 + p_j (every position), and the target rows come back (weights
   * applied, as targets()). With cotangents U, the VJP at each point follows:
   * grads[j] = J(sv0 + p_j)^T u_j. One pass for all points: the prompts are stacked once per point.
   * Implemented in steered-pass.ts; this is its door into the engine's layers and saved forward.
   */
  async steered(points: readonly ArrayLike<number>[], cotangents?: readonly ArrayLike<number>[], opts: { budgetBytes?: number } = {}): Promise<SteeredResult> {
    this.checkBlock(points, this.inputDim, "steered");
    if (cotangents) {
      this.checkBlock(cotangents, this.outputDim, "steered");
      if (cotangents.length !== points.length) throw new RangeError(`steered: ${points.length} points but ${cotangents.length} cotangents`);
    }
    return this.exclusive(() =>
      steeredPass(
        {
          ctx: this.ctx, saved: this.saved, output: this.output, selections: this.selections, offsets: this.offsets, outputDim: this.outputDim,
          layers: this.layers.length, weightsOf: (l, next) => this.weightsOf(l, next),
        },
        points, cotangents, opts.budgetBytes,
      ),
    );
  }

  /** Norms of the layer-S output rows (sv0 added) of every prompt, all positions: the scale radii are set against. */
  sourceRowNorms(): number[] {
    return this.rowNorms(this.saved[0]?.hIn ?? this.output);
  }

  /** Close the ParallelGemm (worker threads). The engine cannot compute afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.isView) return;
    await this.queue.catch(() => undefined);
    await this.ctx.gemm.close();
  }

  // ---- internals ----

  private checkBlock(X: readonly ArrayLike<number>[], len: number, what: string): void {
    if (this.closed) throw new Error(`${what}: the engine is closed`);
    X.forEach((x, i) => {
      if (x.length !== len) throw new RangeError(`${what}: vector ${i} has length ${x.length}, expected ${len}`);
    });
  }

  /** Run products one at a time, each in a heap region released when it ends. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = async () => {
      const heap = this.rt.heap;
      const mark = heap.mark();
      try {
        return await fn();
      } finally {
        heap.release(mark);
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /**
   * The buffers of a block of n vectors. Segments: prompt p's n segments are contiguous, vector j's
   * at row n row_p + j T_p of th [R, d]. Target rows: segment by segment in the same order, each
   * segment's selected rows in target order, in targets.buf [Rc, d].
   */
  private batch(n: number): Batch {
    const byVector: Segment[][] = Array.from({ length: n }, () => []);
    const all: Segment[] = [];
    const compact: CompactSegment[] = [];
    const compactStart: number[][] = Array.from({ length: n }, () => []);
    let crow = 0;
    this.ctx.prompts.forEach((p, pi) => {
      const sel = this.selections[pi]!;
      for (let j = 0; j < n; j++) {
        const seg = { row: n * p.row + j * p.T, prompt: p };
        byVector[j]!.push(seg);
        all.push(seg);
        const runs: { row0: number; r0: number; len: number }[] = [];
        sel.rows.forEach((r, i) => {
          const prev = runs.at(-1);
          if (prev && prev.r0 + prev.len === r) prev.len++;
          else runs.push({ row0: crow + i, r0: r, len: 1 });
        });
        compact.push({ seg, runs });
        compactStart[j]!.push(crow);
        crow += sel.rows.length;
      }
    });
    const R = n * this.ctx.rows;
    const heap = this.rt.heap;
    const th = heap.allocF32(R * this.inputDim);
    const targets: CompactRows = { segments: compact, rows: crow, buf: heap.allocF32(crow * this.inputDim) };
    return { byVector, all, R, th, targets, compactStart, buf: allocBatchBuffers(this.ctx, R, all.length) };
  }

  private fillTangents(V: readonly ArrayLike<number>[], b: Batch): void {
    const d = this.inputDim;
    V.forEach((v, j) => {
      const row = Float32Array.from(v);
      for (const s of b.byVector[j]!) {
        const view = this.rt.heap.f32(b.th + 4 * s.row * d, s.prompt.T * d);
        for (let t = 0; t < s.prompt.T; t++) view.set(row, t * d);
      }
    });
  }

  /** The selected rows of h [T, d] (a prompt's output at sv0), weighted, flattened. */
  private gatherTarget(h: number, sel: ResolvedPositions): Float32Array {
    const d = this.inputDim;
    const out = new Float32Array(sel.rows.length * d);
    sel.rows.forEach((r, i) => {
      const row = this.rt.heap.f32(h + 4 * r * d, d);
      const w = sel.weights ? Math.fround(sel.weights[i]!) : 1;
      for (let c = 0; c < d; c++) out[i * d + c] = w * row[c]!;
    });
    return out;
  }

  /** Weight of target row i of prompt p, as the f32 the kernels multiply by. */
  private weight(p: number, i: number): number {
    const w = this.selections[p]!.weights;
    return w ? Math.fround(w[i]!) : 1;
  }

  /** The output cotangent on the target rows: w_i * u's part i. */
  private fillCotangents(U: readonly ArrayLike<number>[], b: Batch): void {
    const d = this.inputDim;
    U.forEach((u, j) => {
      b.compactStart[j]!.forEach((c0, p) => {
        const n = this.selections[p]!.rows.length;
        const view = this.rt.heap.f32(b.targets.buf + 4 * c0 * d, n * d);
        for (let i = 0; i < n; i++) {
          const w = this.weight(p, i), base = this.offsets[p]! + i * d;
          for (let c = 0; c < d; c++) view[i * d + c] = w * u[base + c]!;
        }
      });
    });
  }

  /** J v from the target rows: w_i times row i. */
  private readTargets(n: number, b: Batch, buf = b.targets.buf): Float32Array[] {
    const d = this.inputDim;
    return Array.from({ length: n }, (_, j) => {
      const out = new Float32Array(this.outputDim);
      b.compactStart[j]!.forEach((c0, p) => {
        const m = this.selections[p]!.rows.length;
        const view = this.rt.heap.f32(buf + 4 * c0 * d, m * d);
        for (let i = 0; i < m; i++) {
          const w = this.weight(p, i), o = this.offsets[p]! + i * d;
          if (w === 1) out.set(view.subarray(i * d, (i + 1) * d), o);
          else for (let c = 0; c < d; c++) out[o + c] = w * view[i * d + c]!;
        }
      });
      return out;
    });
  }

  /** Target rows h_i -> w_i^2 h_i: the target is w_i h_i, and J^T takes the cotangent w_i (J v)_i. */
  private weightTargetsTwice(b: Batch): void {
    const d = this.inputDim;
    b.compactStart.forEach((starts) => starts.forEach((c0, p) => {
      this.selections[p]!.rows.forEach((_, i) => {
        const w = this.weight(p, i);
        const ptr = b.targets.buf + 4 * (c0 + i) * d;
        if (w !== 1) this.rt.k.scale(ptr, Math.fround(w * w), ptr, d);
      });
    }));
  }

  /** Sum of every row of vector j's segments of th, in f64, in a fixed order. */
  private sumSegments(n: number, b: Batch): Float64Array[] {
    const d = this.inputDim;
    return Array.from({ length: n }, (_, j) => {
      const acc = new Float64Array(d);
      for (const s of b.byVector[j]!) {
        const view = this.rt.heap.f32(b.th + 4 * s.row * d, s.prompt.T * d);
        for (let t = 0; t < s.prompt.T; t++) {
          for (let i = 0; i < d; i++) acc[i] += view[t * d + i]!;
        }
      }
      return acc;
    });
  }

  /**
   * Layer l (0 = layer S+1) with its weights in reach (streamed: waits for its read and starts reading
   * `next`, the layer the pass needs after it). Yields to the event loop first, so a signal or an I/O
   * callback is handled between layers even when every product runs on this thread.
   */
  private async weightsOf(l: number, next: number | null): Promise<EngineLayer> {
    await yieldToEventLoop();
    const kl = this.layers[l]!;
    const nextIndex = next === null || next < 0 || next >= this.layers.length ? null : this.layers[next]!.index;
    const staged = await this.slots!.acquire(kl.index, nextIndex);
    return { index: kl.index, norms: kl.norms, fwd: staged.fwd, bwd: staged.bwd };
  }

  /**
   * Layers S+1..T forward at sv0 = base + sv (every row), saving their primal; the output of T in
   * `output`. Runs in the caller's heap region (build's, or moveTo's exclusive one).
   */
  private async forwardAt(sv: ArrayLike<number> | null): Promise<void> {
    const { rt, ctx } = this;
    const d = this.inputDim, rows = ctx.rows;
    const first = this.saved[0]?.hIn ?? this.output;
    rt.k.copy(first, this.base, rows * d);
    if (sv) {
      const at = rt.heap.allocF32(d);
      rt.heap.f32(at, d).set(Float32Array.from(sv));
      rt.k.addRowVector(first, at, first, rows, d);
    }
    const L = this.layers.length;
    for (let l = 0; l < L; l++) {
      // As a JVP's pass: after the last layer a VJP may turn around (L-1 held, then L-2).
      const w = await this.weightsOf(l, l + 1 < L ? l + 1 : L - 2);
      await layerForward(ctx, { index: w.index, norms: w.norms, fwd: w.fwd, bwd: null }, this.saved[l]!, l + 1 < L ? this.saved[l + 1]!.hIn : this.output);
    }
  }

  /** The streamed layers' slots (stream mode), for their read statistics; null when resident. */
  get stream(): LayerStream | null {
    return this.weightPlan.mode === "stream" ? this.slots : null;
  }

  /**
   * Tangents th (entering layer S+1) -> target rows' tangents in targets.buf. `afterLayer(l)` runs once
   * layer l's output tangents are in th (below the last layer; applyJAtTargets copies rows out there).
   */
  private async jvp(b: Batch, afterLayer?: (l: number) => void): Promise<void> {
    const L = this.layers.length;
    if (L === 0) {
      moveTargetRows(this.rt, b.targets, b.th, true, this.inputDim);
      return;
    }
    for (let l = 0; l < L; l++) {
      // After the last layer the VJP turns around: it starts at L-1 (held) and then needs L-2.
      const w = await this.weightsOf(l, l + 1 < L ? l + 1 : L - 2);
      await layerJvp(this.ctx, w, this.saved[l]!, b.all, b.R, b.th, b.buf, l === L - 1 ? b.targets : undefined);
      if (l < L - 1) afterLayer?.(l);
    }
  }

  /** Cotangents of the target rows in targets.buf -> cotangent of layer S+1's input in th. */
  private async vjp(b: Batch): Promise<void> {
    const L = this.layers.length;
    if (L === 0) {
      this.rt.k.fill(b.th, b.R * this.inputDim, 0);
      moveTargetRows(this.rt, b.targets, b.th, false, this.inputDim);
      return;
    }
    for (let l = L - 1; l >= 0; l--) {
      // After layer 0 the next product's JVP starts at 0 (held) and then needs 1.
      const w = await this.weightsOf(l, l > 0 ? l - 1 : 1);
      await layerVjp(this.ctx, w, this.saved[l]!, b.all, b.R, b.th, b.buf, l === L - 1 ? b.targets : undefined);
    }
  }
}

/** A layer of S+1..T: its norms (its projections are in the slots). */
interface KeptLayer {
  index: number;
  norms: LayerNorms;
}

/**
 * Resident or streamed, and the memory of each. Refuses (WeightError, one line naming --weights) what
 * cannot fit the 4 GiB wasm32 memory, before anything is loaded.
 */
export function planWeights(config: Qwen3Config, source: TensorSource, site: Pick<SteeringSite, "sourceLayer" | "targetLayer">, opts: SteeringEngineOptions): WeightPlan {
  return planLayerWeights(config, source, site.sourceLayer + 1, site.targetLayer, opts);
}

/**
 * The same choice for any kept range: layers first..last resident (one slot each, read once) or
 * streamed (two slots every pass reads through), with layers 0..first-1 run once through two slots of
 * their own when resident. The steering engine keeps S+1..T; the forward of the experiments
 * (forward.ts) keeps 0..L-1.
 */
export function planLayerWeights(
  config: Qwen3Config,
  source: TensorSource,
  first: number,
  last: number,
  opts: Pick<SteeringEngineOptions, "weights" | "residentBudgetBytes"> & { extra?: { bytes: number; what: string }; prepack?: boolean },
): WeightPlan {
  // Resident forward-only layers are prepacked (LayerStream's prepack): their slots plus a staging buffer.
  const residentBytes = last >= first ? layerStreamBytes(config, source, first, last, Math.max(2, last - first + 1), opts.prepack) : 0;
  const streamBytes = layerStreamBytes(config, source, 0, last);
  const want = opts.weights ?? "auto";
  const budget = opts.residentBudgetBytes ?? DEFAULT_RESIDENT_BUDGET;
  // Weights kept beside the layers whatever the mode (generation's whole LM head) count against both.
  const extra = opts.extra?.bytes ?? 0;
  const plus = opts.extra ? ` and ${fmtGiB(extra)} for ${opts.extra.what}` : "";
  const mode = want === "auto" ? (residentBytes + extra <= budget ? "resident" : "stream") : want;
  const need = (mode === "resident" ? residentBytes + (first > 0 ? layerStreamBytes(config, source, 0, first - 1) : 0) : streamBytes) + extra;
  if (need > MAX_WEIGHT_BYTES) {
    throw new WeightError(
      mode === "resident"
        ? `model too large for memory: layers ${first}..${last} resident need ${fmtGiB(residentBytes)}${plus}, more than the ${fmtGiB(MAX_WEIGHT_BYTES)} jacsteer allows for weights in one wasm32 memory (4 GiB); use --weights stream (or leave --weights at auto)`
        : `model too large for memory: streaming needs ${fmtGiB(streamBytes)} for two layers of stored weights and one layer's packed panels${plus}, more than the ${fmtGiB(MAX_WEIGHT_BYTES)} jacsteer allows for weights in one wasm32 memory (4 GiB)`,
    );
  }
  return { mode, residentBytes, streamBytes };
}

interface Batch {
  byVector: Segment[][];
  all: Segment[];
  /** Rows of th. */
  R: number;
  th: number;
  targets: CompactRows;
  /** compactStart[j][p]: first target row of vector j, prompt p. */
  compactStart: number[][];
  buf: BatchBuffers;
}

/** Copy the target rows between th [R, d] and targets.buf (S = T: no layer between them). */
function moveTargetRows(rt: Runtime, t: CompactRows, th: number, toCompact: boolean, d: number): void {
  for (const { seg, runs } of t.segments) {
    for (const { row0, r0, len } of runs) {
      const f = th + 4 * (seg.row + r0) * d, k = t.buf + 4 * row0 * d;
      if (toCompact) rt.k.copy(k, f, len * d);
      else rt.k.copy(f, k, len * d);
    }
  }
}
