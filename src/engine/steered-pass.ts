// The steering engine's nonlinear pass at steered points (SteeringEngine.steered): what `linearity`
// and `dct` need beyond J v and J^T u at sv0. For points p_1..p_n, layers S+1..T run on the layer-S
// output plus sv0 + p_j at every position, all points in one batch: each prompt is stacked once per
// point (prompt p's n copies contiguous, as the engine's JVP batches lay out their segments), so
// every linear map is one matrix product over all copies. With cotangents, the forward keeps what
// the VJP reads (one SavedLayer per layer, as the engine keeps at sv0) and the VJP at each point
// follows on the same layers, giving J(sv0 + p_j)^T u_j.
//
// Same pieces as the engine (layerForward, layerVjp, the engine's weight slots), so at p_j = 0 the
// result is bitwise the engine's targets() and applyJt (tested). Points are processed in chunks that
// keep the activations under a budget; every kernel works per row or per sequence and gemmPacked sums
// each element in the same order whatever M, so the chunking never changes a bit (tested).
import type { ResolvedPositions } from "../jacobian/positions.js";
import {
  allocBatchBuffers,
  allocForwardLayer,
  allocSavedLayer,
  forwardLayerFloats,
  layerForward,
  layerVjp,
  type CompactRows,
  type CompactSegment,
  type LayerContext,
  type PromptRows,
  type SavedLayer,
  type Segment,
} from "./decoder-layer.js";
import type { EngineLayer } from "./layer-weights.js";

/** Targets at each point (selected rows, weights applied, prompts concatenated) and, with cotangents, J(point)^T u. */
export interface SteeredResult {
  targets: Float32Array[];
  grads?: Float64Array[];
}

/** What the pass reads from the engine. */
export interface SteeredPassState {
  ctx: LayerContext;
  /** The engine's saved forward at sv0 (saved[0].hIn: layer S+1's input); empty when S = T. */
  saved: readonly SavedLayer[];
  /** Output of layer T at sv0 (when S = T: the layer-S output plus sv0). */
  output: number;
  selections: readonly ResolvedPositions[];
  offsets: readonly number[];
  outputDim: number;
  /** Layers S+1..T, counted. */
  layers: number;
  weightsOf(l: number, next: number | null): Promise<EngineLayer>;
}

/** Activation memory one chunk of points may take (bytes): the experiments' default budget. */
export const STEERED_BUDGET_BYTES = 768 * 2 ** 20;

/** Floats one point costs in a chunk: its copy of every prompt through the pass. */
function floatsPerPoint(e: SteeredPassState, withVjp: boolean): number {
  const { dims } = e.ctx;
  const { d, I, H, KV, qDim, kvDim } = dims;
  let f = 0;
  for (const p of e.ctx.prompts) {
    // hidden state and output, then a forward layer's buffers; with the VJP one SavedLayer per layer
    // (forwardLayerFloats counts a superset of one) and the batch buffers.
    const layer = forwardLayerFloats(dims, p.T) + p.T * (qDim + kvDim);
    f += 2 * p.T * d + (withVjp ? Math.max(1, e.layers) * layer + p.T * (2 * d + 2 * qDim + 3 * kvDim + 2 * I + H + KV) : layer);
  }
  return f;
}

/** The pass for all points, in chunks under `budgetBytes` (default STEERED_BUDGET_BYTES). */
export async function steeredPass(
  e: SteeredPassState,
  points: readonly ArrayLike<number>[],
  cotangents?: readonly ArrayLike<number>[],
  budgetBytes = STEERED_BUDGET_BYTES,
): Promise<SteeredResult> {
  const per = floatsPerPoint(e, !!cotangents);
  const chunk = Math.max(1, Math.floor(budgetBytes / 4 / per));
  const targets: Float32Array[] = [];
  const grads: Float64Array[] = [];
  for (let j0 = 0; j0 < points.length; j0 += chunk) {
    const r = await chunkPass(e, points.slice(j0, j0 + chunk), cotangents?.slice(j0, j0 + chunk));
    targets.push(...r.targets);
    if (r.grads) grads.push(...r.grads);
  }
  return cotangents ? { targets, grads } : { targets };
}

interface Copy extends PromptRows {
  /** The prompt it copies and the point it carries. */
  prompt: number;
  point: number;
  /** The prompt's first row in the engine's stacked rows. */
  src: number;
}

async function chunkPass(e: SteeredPassState, points: readonly ArrayLike<number>[], cotangents?: readonly ArrayLike<number>[]): Promise<SteeredResult> {
  const { rt, dims } = e.ctx;
  const { d, H } = dims;
  const n = points.length;
  const heap = rt.heap;
  const mark = heap.mark();
  try {
    const copies: Copy[] = [];
    let probs = 0;
    e.ctx.prompts.forEach((p, pi) => {
      for (let j = 0; j < n; j++) {
        copies.push({ row: n * p.row + j * p.T, T: p.T, probs, prompt: pi, point: j, src: p.row });
        probs += H * p.T * p.T;
      }
    });
    const R = n * e.ctx.rows;
    const ctx: LayerContext = { ...e.ctx, prompts: copies, rows: R };
    // Layer S+1's input at each point: the engine's (layer-S output + sv0) plus p_j on every row.
    const h0 = e.saved[0]?.hIn ?? e.output;
    const h = heap.allocF32(R * d);
    const pt = heap.allocF32(d);
    for (const c of copies) {
      const dst = h + 4 * c.row * d;
      rt.k.copy(dst, h0 + 4 * c.src * d, c.T * d);
      heap.f32(pt, d).set(Float32Array.from(points[c.point]!));
      rt.k.addRowVector(dst, pt, dst, c.T, d);
    }
    const L = e.layers;
    const withVjp = !!cotangents;
    let out = h;
    if (withVjp) {
      const saved = Array.from({ length: L }, (_, l) => allocSavedLayer(rt, dims, R, probs, l === 0 ? h : undefined));
      if (L) out = heap.allocF32(R * d);
      for (let l = 0; l < L; l++) {
        // the VJP turns around after the last layer: it needs L-1 (held) and then L-2
        const w = await e.weightsOf(l, l + 1 < L ? l + 1 : L - 2);
        await layerForward(ctx, w, saved[l]!, l + 1 < L ? saved[l + 1]!.hIn : out);
      }
      const targets = gatherTargets(e, copies, n, out);
      const grads = await vjpAt(e, ctx, copies, n, saved, cotangents!);
      return { targets, grads };
    }
    // Forward only: one layer's buffers, in place (as forward.ts runs the experiments).
    const fl = allocForwardLayer(rt, dims, R, probs, h);
    for (let l = 0; l < L; l++) {
      // the next pass starts again at layer S+1
      const w = await e.weightsOf(l, l + 1 < L ? l + 1 : 0);
      await layerForward(ctx, w, fl, h);
    }
    return { targets: gatherTargets(e, copies, n, out) };
  } finally {
    heap.release(mark);
  }
}

/** Weight of target row i of prompt p, as the f32 the kernels multiply by (as the engine). */
function weight(e: SteeredPassState, p: number, i: number): number {
  const w = e.selections[p]!.weights;
  return w ? Math.fround(w[i]!) : 1;
}

/** Each point's target: the selected rows of its copies of h [R, d], weighted, prompts concatenated. */
function gatherTargets(e: SteeredPassState, copies: readonly Copy[], n: number, h: number): Float32Array[] {
  const d = e.ctx.dims.d;
  const out = Array.from({ length: n }, () => new Float32Array(e.outputDim));
  for (const c of copies) {
    const sel = e.selections[c.prompt]!;
    const view = e.ctx.rt.heap.f32(h + 4 * c.row * d, c.T * d);
    sel.rows.forEach((r, i) => {
      const w = weight(e, c.prompt, i), o = e.offsets[c.prompt]! + i * d;
      for (let k = 0; k < d; k++) out[c.point]![o + k] = w * view[r * d + k]!;
    });
  }
  return out;
}

/** J(point_j)^T u_j: the cotangent w_i u_j on the target rows, the VJP down to layer S+1's input, summed over rows. */
async function vjpAt(e: SteeredPassState, ctx: LayerContext, copies: readonly Copy[], n: number, saved: readonly SavedLayer[], U: readonly ArrayLike<number>[]): Promise<Float64Array[]> {
  const { rt } = ctx;
  const d = ctx.dims.d;
  const L = e.layers;
  const grads = Array.from({ length: n }, () => new Float64Array(d));
  if (L === 0) {
    // S = T: the target is the weighted steered rows themselves.
    for (const c of copies) {
      e.selections[c.prompt]!.rows.forEach((_, i) => {
        const w = weight(e, c.prompt, i), o = e.offsets[c.prompt]! + i * d, u = U[c.point]!;
        for (let k = 0; k < d; k++) grads[c.point]![k] += Math.fround(w * u[o + k]!);
      });
    }
    return grads;
  }
  const segs: Segment[] = copies.map((c) => ({ row: c.row, prompt: c }));
  const compact: CompactSegment[] = [];
  let crow = 0;
  const starts: number[] = [];
  copies.forEach((c, ci) => {
    const runs: { row0: number; r0: number; len: number }[] = [];
    e.selections[c.prompt]!.rows.forEach((r, i) => {
      const prev = runs.at(-1);
      if (prev && prev.r0 + prev.len === r) prev.len++;
      else runs.push({ row0: crow + i, r0: r, len: 1 });
    });
    compact.push({ seg: segs[ci]!, runs });
    starts.push(crow);
    crow += e.selections[c.prompt]!.rows.length;
  });
  const heap = rt.heap;
  const targets: CompactRows = { segments: compact, rows: crow, buf: heap.allocF32(crow * d) };
  copies.forEach((c, ci) => {
    const m = e.selections[c.prompt]!.rows.length;
    const view = heap.f32(targets.buf + 4 * starts[ci]! * d, m * d);
    const u = U[c.point]!;
    for (let i = 0; i < m; i++) {
      const w = weight(e, c.prompt, i), base = e.offsets[c.prompt]! + i * d;
      for (let k = 0; k < d; k++) view[i * d + k] = w * u[base + k]!;
    }
  });
  const R = ctx.rows;
  const th = heap.allocF32(R * d);
  const buf = allocBatchBuffers(ctx, R, segs.length);
  for (let l = L - 1; l >= 0; l--) {
    // after layer S+1 the next pass starts there (held) and then needs S+2
    const w = await e.weightsOf(l, l > 0 ? l - 1 : 1);
    await layerVjp(ctx, w, saved[l]!, segs, R, th, buf, l === L - 1 ? targets : undefined);
  }
  // Sum every row of each point's copies, in f64, in a fixed order (as the engine's sumSegments).
  for (const c of copies) {
    const view = heap.f32(th + 4 * c.row * d, c.T * d);
    const acc = grads[c.point]!;
    for (let t = 0; t < c.T; t++) for (let k = 0; k < d; k++) acc[k] += view[t * d + k]!;
  }
  return grads;
}
