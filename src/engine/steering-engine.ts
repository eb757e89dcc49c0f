// The steering Jacobian J = d target / d sv (CONTRACT.md section 1) without an autodiff graph: the
// fast path for solvers. Same quantity as src/jacobian/steering-jacobian.ts, which stays the
// reference the tests compare against.
//
// Memory plan (one wasm32 memory, 4 GiB):
//   - Embedding: only the prompts' rows are read (the whole matrix only briefly when the source
//     cannot read rows).
//   - Layers 0..S do not depend on sv: each runs ONCE for all prompts, one layer at a time, its
//     weights packed into a scratch region that the next layer reuses; nothing of them is kept.
//   - Layers S+1..T: the projections are packed once at load, for A W^T (forward, JVP) and A W (VJP);
//     the forward at sv0 runs once and keeps what the derivatives read (decoder-layer.ts SavedLayer).
// Products:
//   - J V for a block of n vectors: the n tangents of every prompt are stacked as segments of one
//     [n sum T_p, d] batch, so each linear layer is one matrix-matrix product (M = n sum T_p) instead
//     of n matrix-vector ones. The tangent entering layer S+1 is v_j on every row.
//   - J^T U: the batched VJP with the cotangent in the last K rows of each segment (zeros elsewhere);
//     the result for vector j is the sum over all rows of its segments at layer S+1's input.
//   - J^T J V: J V, then its non-target rows zeroed and the VJP run on the same buffer.
// Products are async (the matrix products may run on worker threads) and run one at a time: a
// product's buffers live in a heap region released when it ends.
import type { Runtime } from "../runtime/runtime.js";
import type { Qwen3Config } from "../model/config.js";
import { checkWeightBudget, type TensorSource } from "../model/weights.js";
import { ropeTables } from "../kernels/rope.js";
import { validateSite, type SteeringSite } from "../jacobian/steering-jacobian.js";
import { resolvePositions, type ResolvedPositions } from "../jacobian/positions.js";
import {
  allocLayerMatrices,
  loadLayerNorms,
  maxProjectionFloats,
  packedLayerFloats,
  packLayerMatrices,
  readEmbeddingRows,
  type EngineLayer,
} from "./layer-weights.js";
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

export interface SteeringEngineOptions {
  /** Where matrix products run (default: this thread). The engine closes it in close(). */
  gemm?: ParallelGemm;
  /** Progress lines (loading), e.g. to stderr. */
  log?: (line: string) => void;
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

  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly rt: Runtime,
    readonly config: Qwen3Config,
    readonly prompts: readonly (readonly number[])[],
    readonly site: SteeringSite,
    private readonly ctx: LayerContext,
    private readonly layers: readonly EngineLayer[],
    private readonly saved: readonly SavedLayer[],
    /** Output of layer T [sum T_p, d]. */
    private readonly output: number,
    loadSeconds: { embedding: number; prefix: number; suffix: number },
  ) {
    this.loadSeconds = loadSeconds;
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
    // Layers S+1..T are kept packed both ways; one layer's raw and packed copies serve the prefix.
    const kept = site.targetLayer - site.sourceLayer;
    checkWeightBudget(
      kept * (packedLayerFloats(config, false) + packedLayerFloats(config, true)) + packedLayerFloats(config, false) + maxProjectionFloats(config),
      `the packed layers ${site.sourceLayer + 1}..${site.targetLayer}`,
    );
    const start = rt.heap.mark();
    try {
      return await SteeringEngine.build(rt, config, source, prompts, site, opts);
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

    // Kept for the session: packed weights of layers S+1..T, their saved primal, the output of T.
    const layers: EngineLayer[] = [];
    const saved: SavedLayer[] = [];
    for (let i = S + 1; i <= Tl; i++) {
      layers.push({ index: i, norms: loadLayerNorms(rt, config, source, i), fwd: allocLayerMatrices(rt, config, false), bwd: allocLayerMatrices(rt, config, true) });
      saved.push(allocSavedLayer(rt, dims, rows, probFloats));
    }
    const output = saved.length ? heap.allocF32(rows * d) : h;

    const mark = heap.mark();
    try {
      const raw = heap.allocF32(maxProjectionFloats(config));
      // Prefix layers 0..S: one scratch layer, reused.
      const prefixSaved = allocSavedLayer(rt, dims, rows, probFloats, h);
      const prefixMark = heap.mark();
      for (let i = 0; i <= S; i++) {
        const layer: EngineLayer = { index: i, norms: loadLayerNorms(rt, config, source, i), fwd: allocLayerMatrices(rt, config, false), bwd: null };
        packLayerMatrices(rt, config, source, i, raw, layer.fwd, null);
        await layerForward(ctx, layer, prefixSaved, h);
        heap.release(prefixMark);
      }
      loadSeconds.prefix = (performance.now() - t0) / 1000 - loadSeconds.embedding;
      log(`engine: layers 0..${S} run once for ${prompts.length} prompt(s) (${loadSeconds.prefix.toFixed(1)} s)`);
      // sv0 enters at the output of layer S.
      const first = saved[0]?.hIn ?? output;
      rt.k.copy(first, h, rows * d);
      if (site.at) {
        const at = heap.allocF32(d);
        heap.f32(at, d).set(site.at);
        rt.k.addRowVector(first, at, first, rows, d);
      }
      const t1 = performance.now();
      for (let l = 0; l < layers.length; l++) {
        packLayerMatrices(rt, config, source, layers[l]!.index, raw, layers[l]!.fwd, layers[l]!.bwd);
        await layerForward(ctx, layers[l]!, saved[l]!, l + 1 < saved.length ? saved[l + 1]!.hIn : output);
      }
      loadSeconds.suffix = (performance.now() - t1) / 1000;
      if (layers.length) log(`engine: layers ${S + 1}..${Tl} packed and run at sv0 (${loadSeconds.suffix.toFixed(1)} s)`);
    } finally {
      heap.release(mark);
    }
    return new SteeringEngine(rt, config, prompts, site, ctx, layers, saved, output, loadSeconds);
  }

  /** Target activations per prompt at sv0 (selected rows, weights applied; K*d each for the last K). */
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

  /** Close the ParallelGemm (worker threads). The engine cannot compute afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
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
  private readTargets(n: number, b: Batch): Float32Array[] {
    const d = this.inputDim;
    return Array.from({ length: n }, (_, j) => {
      const out = new Float32Array(this.outputDim);
      b.compactStart[j]!.forEach((c0, p) => {
        const m = this.selections[p]!.rows.length;
        const view = this.rt.heap.f32(b.targets.buf + 4 * c0 * d, m * d);
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

  /** Tangents th (entering layer S+1) -> target rows' tangents in targets.buf. */
  private async jvp(b: Batch): Promise<void> {
    const L = this.layers.length;
    if (L === 0) {
      moveTargetRows(this.rt, b.targets, b.th, true, this.inputDim);
      return;
    }
    for (let l = 0; l < L; l++) {
      await layerJvp(this.ctx, this.layers[l]!, this.saved[l]!, b.all, b.R, b.th, b.buf, l === L - 1 ? b.targets : undefined);
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
      await layerVjp(this.ctx, this.layers[l]!, this.saved[l]!, b.all, b.R, b.th, b.buf, l === L - 1 ? b.targets : undefined);
    }
  }
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
