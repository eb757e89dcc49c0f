// One Qwen3 decoder layer on flat buffers, in three plain functions (llm.c style): layerForward at the
// primal point, saving what the derivatives read; layerJvp and layerVjp for a whole batch of tangents
// (or cotangents) against that one saved primal.
//
// Legend: d hidden size, I intermediate size, H query heads, KV key/value heads, hd head_dim,
// qDim = H hd, kvDim = KV hd. P prompts of T_p tokens; the primal rows of all prompts are stacked
// ([sum T_p, .]: prompt p at rows prompts[p].row ..). A batch stacks n tangents per prompt as
// segments: prompt p, vector j occupies rows seg.row .. seg.row + T_p - 1 of a [R, .] buffer.
// Every linear map runs as ONE matrix product over all R rows (M = R: matrix-matrix work, with the
// packed weight streamed once); per-row ops (RMSNorm, RoPE, attention, SwiGLU) run per segment
// against the saved primal of the segment's prompt.
//
// Layer (transformers' Qwen3DecoderLayer):
//   x = rms(h; w_in);  q = rope(rms_head(x Wq^T; w_qn));  k = rope(rms_head(x Wk^T; w_kn));  v = x Wv^T
//   h1 = h + attn(q, k, v) Wo^T;  x2 = rms(h1; w_post);  out = h1 + (silu(x2 Wg^T) * x2 Wu^T) Wd^T
// Residual adds are folded into the products (gemm accumulating onto a copy of the residual).
import type { Runtime } from "../runtime/runtime.js";
import type { Qwen3Config } from "../model/config.js";
import type { EngineLayer, LayerMatrices } from "./layer-weights.js";
import type { GemmJob, KernelTask, ParallelGemm } from "./parallel-gemm.js";

export interface LayerDims {
  d: number;
  I: number;
  H: number;
  KV: number;
  hd: number;
  qDim: number;
  kvDim: number;
  eps: number;
  /** Attention score scale head_dim^-0.5. */
  scale: number;
}

export function layerDims(cfg: Qwen3Config): LayerDims {
  return {
    d: cfg.hiddenSize,
    I: cfg.intermediateSize,
    H: cfg.numHeads,
    KV: cfg.numKvHeads,
    hd: cfg.headDim,
    qDim: cfg.numHeads * cfg.headDim,
    kvDim: cfg.numKvHeads * cfg.headDim,
    eps: cfg.rmsNormEps,
    scale: 1 / Math.sqrt(cfg.headDim),
  };
}

/** Where prompt p's rows sit in the stacked primal buffers. */
export interface PromptRows {
  /** First row in [sum T_p, .] buffers. */
  row: number;
  /** Tokens. */
  T: number;
  /** First float of this prompt's [H, T, past + T] attention probabilities. */
  probs: number;
  /**
   * Decoding with a KV cache (layerForward's `kv`): positions of this sequence already cached (its
   * rows are positions past..past+T-1; default 0), and the sequence's first row in the caches.
   */
  past?: number;
  cacheRow?: number;
}

/** One layer's key and value caches, [rows, kvDim] each: sequence p's positions from row p.cacheRow. */
export interface LayerKv {
  k: number;
  v: number;
}

/** Rows of one (prompt, vector) pair in a batch buffer [R, .]. */
export interface Segment {
  row: number;
  prompt: PromptRows;
}

/** Shared by every call: runtime, sizes, products, rope tables. */
export interface LayerContext {
  rt: Runtime;
  dims: LayerDims;
  gemm: ParallelGemm;
  prompts: readonly PromptRows[];
  /** Total primal rows sum T_p. */
  rows: number;
  /** cos, sin [maxT, hd / 2] for positions 0.. (every prompt starts at position 0). */
  cos: number;
  sin: number;
  /** attentionScratchFloats for the longest prompt. */
  attnScratch: number;
}

/** The primal of one layer at sv0 that its JVP and VJP read; all [sum T_p, .] stacks. */
export interface SavedLayer {
  /** Layer input h [., d] and input_layernorm's rstd [.]. */
  hIn: number;
  rstd1: number;
  /** q_proj output before q_norm [., qDim], q_norm's rstd [. * H], q after norm and RoPE [., qDim]. */
  qRaw: number;
  qRstd: number;
  qRot: number;
  /** The same for k [., kvDim]. */
  kRaw: number;
  kRstd: number;
  kRot: number;
  v: number;
  /** Attention probabilities, per prompt [H, T, T] at PromptRows.probs. */
  probs: number;
  /** Residual after attention [., d] and post_attention_layernorm's rstd [.]. */
  h1: number;
  rstd2: number;
  /** gate_proj and up_proj outputs [., I]. */
  gate: number;
  up: number;
}

/** Allocate a SavedLayer on rt.heap for `rows` primal rows and `probFloats` attention floats. */
export function allocSavedLayer(rt: Runtime, dims: LayerDims, rows: number, probFloats: number, hIn?: number): SavedLayer {
  const a = (n: number) => rt.heap.allocF32(n);
  const { d, I, H, KV, qDim, kvDim } = dims;
  return {
    hIn: hIn ?? a(rows * d),
    rstd1: a(rows),
    qRaw: a(rows * qDim),
    qRstd: a(rows * H),
    qRot: a(rows * qDim),
    kRaw: a(rows * kvDim),
    kRstd: a(rows * KV),
    kRot: a(rows * kvDim),
    v: a(rows * kvDim),
    probs: a(probFloats),
    h1: a(rows * d),
    rstd2: a(rows),
    gate: a(rows * I),
    up: a(rows * I),
  };
}

/**
 * A SavedLayer for a forward that keeps nothing for derivatives (the experiments' forward,
 * forward.ts): layerForward runs unchanged on it, with q and k normalised and rotated in place
 * (qRot = qRaw, kRot = kRaw: both kernels allow it), so one layer of `rows` rows takes
 * forwardLayerFloats floats. hIn is the caller's hidden state (layerForward may write its output there).
 */
export function allocForwardLayer(rt: Runtime, dims: LayerDims, rows: number, probFloats: number, hIn: number): SavedLayer {
  const a = (n: number) => rt.heap.allocF32(n);
  const { d, I, H, KV, qDim, kvDim } = dims;
  const q = a(rows * qDim), k = a(rows * kvDim);
  return {
    hIn, rstd1: a(rows), qRaw: q, qRstd: a(rows * H), qRot: q, kRaw: k, kRstd: a(rows * KV), kRot: k,
    v: a(rows * kvDim), probs: a(probFloats), h1: a(rows * d), rstd2: a(rows), gate: a(rows * I), up: a(rows * I),
  };
}

/**
 * Floats allocForwardLayer and layerForward's temporaries take for one sequence of T tokens (its
 * [H, T, T] attention probabilities included), so callers can size batches to a memory budget.
 */
export function forwardLayerFloats(dims: LayerDims, T: number, past = 0): number {
  const { d, I, H, KV, qDim, kvDim } = dims;
  const perRow = 2 + H + KV + qDim + 2 * kvDim + d + 2 * I + /* temporaries xn, att, mlp */ d + qDim + I;
  return T * perRow + H * T * (past + T);
}

function jobs(a: number, m: number, list: Array<[keyof LayerMatrices, number, boolean?]>, mats: LayerMatrices): GemmJob[] {
  return list.map(([p, c, accumulate]) => ({ a, m, packed: mats[p], pack: mats[p].pack, c, accumulate: accumulate ?? false }));
}

/**
 * Forward of layer w on the stacked prompts: reads s.hIn, fills the rest of s, writes hOut (may
 * alias s.hIn). Temporaries live in a heap scope of this call. With `kv` (decoding), each prompt's
 * rows are its positions past..past+T-1: their keys and values are appended to the caches and their
 * queries attend over every cached position (the rope tables must cover past + T positions).
 */
export async function layerForward(c: LayerContext, w: EngineLayer, s: SavedLayer, hOut: number, kv?: LayerKv): Promise<void> {
  const { rt, dims, rows: R } = c;
  const { d, I, H, KV, hd, qDim, eps, scale } = dims;
  const k = rt.k;
  const heap = rt.heap;
  const mark = heap.mark();
  try {
    const xn = heap.allocF32(R * d);
    const att = heap.allocF32(R * qDim);
    const mlp = heap.allocF32(R * I);
    // The per-row work runs per prompt, each prompt's rows whole on one thread (so the thread count
    // cannot change the result): many stacked sequences (the experiments' batches) spread over the
    // threads; a few short prompts stay on this thread (runTasks' cost threshold).
    const perPrompt = (cost: number, task: (p: PromptRows) => KernelTask) => c.gemm.runTasks(c.prompts.map(task), cost);
    const rowCost = ROW_OP_COST * R * d;
    await perPrompt(rowCost, (p) => [["rmsnormForward", s.hIn + 4 * p.row * d, w.norms.input, xn + 4 * p.row * d, s.rstd1 + 4 * p.row, p.T, d, eps]]);
    await c.gemm.run(jobs(xn, R, [["q", s.qRaw], ["k", s.kRaw], ["v", s.v]], w.fwd));
    let attnCost = rowCost;
    for (const p of c.prompts) attnCost += attentionCost(dims, p.T, p.past ?? 0);
    await perPrompt(attnCost, (p) => {
      const qo = 4 * p.row * qDim, ko = 4 * p.row * dims.kvDim, ho = 4 * p.row * d;
      const past = p.past ?? 0, table = 4 * past * (hd / 2);
      const qkv: KernelTask = [
        ["rmsnormForward", s.qRaw + qo, w.norms.q, s.qRot + qo, s.qRstd + 4 * p.row * H, p.T * H, hd, eps],
        ["rmsnormForward", s.kRaw + ko, w.norms.k, s.kRot + ko, s.kRstd + 4 * p.row * KV, p.T * KV, hd, eps],
        ["ropeForward", s.qRot + qo, s.qRot + qo, c.cos + table, c.sin + table, p.T, H, hd],
        ["ropeForward", s.kRot + ko, s.kRot + ko, c.cos + table, c.sin + table, p.T, KV, hd],
      ];
      let attend: KernelTask;
      if (kv) {
        // append this step's keys and values; the queries attend over all past + T positions
        const c0 = 4 * (p.cacheRow ?? 0) * dims.kvDim, cNew = c0 + 4 * past * dims.kvDim;
        attend = [
          ["copy", kv.k + cNew, s.kRot + ko, p.T * dims.kvDim],
          ["copy", kv.v + cNew, s.v + ko, p.T * dims.kvDim],
          ["attentionForward", s.qRot + qo, kv.k + c0, kv.v + c0, att + qo, s.probs + 4 * p.probs, p.T, past + p.T, H, KV, hd, scale],
        ];
      } else {
        attend = [["attentionForward", s.qRot + qo, s.kRot + ko, s.v + ko, att + qo, s.probs + 4 * p.probs, p.T, p.T, H, KV, hd, scale]];
      }
      // then the residual the o_proj product accumulates onto
      return [...qkv, ...attend, ["copy", s.h1 + ho, s.hIn + ho, p.T * d]];
    });
    await c.gemm.run(jobs(att, R, [["o", s.h1, true]], w.fwd));
    await perPrompt(rowCost, (p) => {
      const ho = 4 * p.row * d;
      // then the residual the down_proj product accumulates onto (hOut may alias hIn, read above)
      return [["rmsnormForward", s.h1 + ho, w.norms.post, xn + ho, s.rstd2 + 4 * p.row, p.T, d, eps], ["copy", hOut + ho, s.h1 + ho, p.T * d]];
    });
    await c.gemm.run(jobs(xn, R, [["gate", s.gate], ["up", s.up]], w.fwd));
    await perPrompt(SILU_COST * R * I, (p) => {
      const o = 4 * p.row * I;
      return [["siluMulForward", s.gate + o, s.up + o, mlp + o, p.T * I]];
    });
    await c.gemm.run(jobs(mlp, R, [["down", hOut, true]], w.fwd));
  } finally {
    heap.release(mark);
  }
}

/** Work buffers of a batch of R rows, shared by layerJvp and layerVjp (allocBatchBuffers). */
export interface BatchBuffers {
  /** [R, d] */
  x: number;
  /** [R, qDim] x2 */
  q: number;
  att: number;
  /** [R, kvDim] x2 */
  k: number;
  v: number;
  /** [R, I] x2 */
  g: number;
  u: number;
  /** Attention scratch, one per segment (segments may run on different threads). */
  scratch: number;
}

export function allocBatchBuffers(c: LayerContext, R: number, segments: number): BatchBuffers {
  const a = (n: number) => c.rt.heap.allocF32(n);
  const { d, I, qDim, kvDim } = c.dims;
  return { x: a(R * d), q: a(R * qDim), att: a(R * qDim), k: a(R * kvDim), v: a(R * kvDim), g: a(R * I), u: a(R * I), scratch: a(segments * c.attnScratch) };
}

// Rough costs of the per-segment kernels in flop-equivalents (they run far below the products'
// GFLOP/s), so that only dispatches worth a worker round trip (~70 us) are split over threads.
const ROW_OP_COST = 50;
const SILU_COST = 100;
function attentionCost(d: LayerDims, T: number, past = 0): number {
  return 8 * d.H * T * (past + T) * d.hd + ROW_OP_COST * T * (d.qDim + d.kvDim);
}

/**
 * The target rows of the last layer, compacted: after its attention only these rows matter (the MLP
 * and o_proj are per row), so the last layer's JVP finishes, and its VJP starts, on a [rows, d]
 * buffer of just them: about 4/5 of a layer's products at K = 4 of 32 tokens.
 */
export interface CompactRows {
  segments: readonly CompactSegment[];
  /** Total compact rows Rc. */
  rows: number;
  /** [Rc, d]: the JVP's output, or the VJP's input cotangent. */
  buf: number;
}

export interface CompactSegment {
  seg: Segment;
  /** Runs of consecutive target rows: compact rows row0 .. row0 + len - 1 are segment rows r0 .. r0 + len - 1. */
  runs: readonly { row0: number; r0: number; len: number }[];
}

/** Copy rows between a full batch buffer [R, width] and a compact one [Rc, width]. */
function moveRows(c: LayerContext, t: CompactRows, full: number, compact: number, width: number, toCompact: boolean): void {
  for (const { seg, runs } of t.segments) {
    for (const { row0, r0, len } of runs) {
      const f = full + 4 * (seg.row + r0) * width, k = compact + 4 * row0 * width;
      if (toCompact) c.rt.k.copy(k, f, len * width);
      else c.rt.k.copy(f, k, len * width);
    }
  }
}

/**
 * JVP of layer w at its saved primal s, for the batch `segs` of R rows: th [R, d] (tangent of the
 * layer input) is overwritten with the tangent of its output; or, with `last`, only the target rows'
 * output tangents are formed, in last.buf (th is then scratch).
 */
export async function layerJvp(c: LayerContext, w: EngineLayer, s: SavedLayer, segs: readonly Segment[], R: number, th: number, b: BatchBuffers, last?: CompactRows): Promise<void> {
  const { d, I, H, KV, hd, qDim, kvDim, scale } = c.dims;
  await c.gemm.runTasks(segs.map(({ row, prompt: p }) => [
    ["rmsnormJvp", s.hIn + 4 * p.row * d, w.norms.input, s.rstd1 + 4 * p.row, th + 4 * row * d, b.x + 4 * row * d, p.T, d],
  ]), ROW_OP_COST * R * d);
  await c.gemm.run(jobs(b.x, R, [["q", b.q], ["k", b.k], ["v", b.v]], w.fwd));
  let cost = 0;
  const attn: KernelTask[] = segs.map(({ row, prompt: p }, i) => {
    const tq = b.q + 4 * row * qDim, tk = b.k + 4 * row * kvDim;
    cost += attentionCost(c.dims, p.T);
    return [
      ["rmsnormJvp", s.qRaw + 4 * p.row * qDim, w.norms.q, s.qRstd + 4 * p.row * H, tq, tq, p.T * H, hd],
      ["ropeForward", tq, tq, c.cos, c.sin, p.T, H, hd],
      ["rmsnormJvp", s.kRaw + 4 * p.row * kvDim, w.norms.k, s.kRstd + 4 * p.row * KV, tk, tk, p.T * KV, hd],
      ["ropeForward", tk, tk, c.cos, c.sin, p.T, KV, hd],
      ["attentionJvp", s.qRot + 4 * p.row * qDim, s.kRot + 4 * p.row * kvDim, s.v + 4 * p.row * kvDim, s.probs + 4 * p.probs,
        tq, tk, b.v + 4 * row * kvDim, b.att + 4 * row * qDim, p.T, p.T, H, KV, hd, scale, b.scratch + 4 * i * c.attnScratch],
    ];
  });
  await c.gemm.runTasks(attn, cost);
  // The rest is per row: on all R rows, or on the last layer's target rows only.
  let rows = R, out = th, att = b.att;
  let runs: Array<{ seg: Segment; row0: number; r0: number; len: number }>;
  if (last) {
    moveRows(c, last, th, last.buf, d, true);
    moveRows(c, last, b.att, b.q, qDim, true);
    rows = last.rows, out = last.buf, att = b.q;
    runs = last.segments.flatMap(({ seg, runs }) => runs.map((r) => ({ seg, ...r })));
  } else {
    runs = segs.map((seg) => ({ seg, row0: seg.row, r0: 0, len: seg.prompt.T }));
  }
  await c.gemm.run(jobs(att, rows, [["o", out, true]], w.fwd));
  await c.gemm.runTasks(runs.map(({ seg: { prompt: p }, row0, r0, len }) => [
    ["rmsnormJvp", s.h1 + 4 * (p.row + r0) * d, w.norms.post, s.rstd2 + 4 * (p.row + r0), out + 4 * row0 * d, b.x + 4 * row0 * d, len, d],
  ]), ROW_OP_COST * rows * d);
  await c.gemm.run(jobs(b.x, rows, [["gate", b.g], ["up", b.u]], w.fwd));
  await c.gemm.runTasks(runs.map(({ seg: { prompt: p }, row0, r0, len }) => {
    const o = 4 * row0 * I, po = 4 * (p.row + r0) * I;
    return [["siluMulJvp", s.gate + po, s.up + po, b.g + o, b.u + o, b.g + o, len * I]];
  }), SILU_COST * rows * I);
  await c.gemm.run(jobs(b.g, rows, [["down", out, true]], w.fwd));
}

/**
 * VJP of layer w at its saved primal s, for the batch `segs` of R rows: gh [R, d] (cotangent of the
 * layer output) is overwritten with the cotangent of its input. With `last`, the output cotangent
 * is given on the target rows only, in last.buf (which is overwritten), and gh is written whole.
 */
export async function layerVjp(c: LayerContext, w: EngineLayer, s: SavedLayer, segs: readonly Segment[], R: number, gh: number, b: BatchBuffers, last?: CompactRows): Promise<void> {
  const bwd = w.bwd;
  if (!bwd) throw new Error(`layer ${w.index} was loaded without its VJP weights`);
  const k = c.rt.k;
  const { d, I, H, KV, hd, qDim, kvDim, scale } = c.dims;
  let rows = R, g = gh;
  let runs: Array<{ seg: Segment; row0: number; r0: number; len: number }>;
  if (last) {
    rows = last.rows, g = last.buf;
    runs = last.segments.flatMap(({ seg, runs }) => runs.map((r) => ({ seg, ...r })));
  } else {
    runs = segs.map((seg) => ({ seg, row0: seg.row, r0: 0, len: seg.prompt.T }));
  }
  // MLP: gm = g Wd; (gg, gu) = siluMul VJP; gx = gg Wg + gu Wu; g += rms_post VJP(gx)
  await c.gemm.run(jobs(g, rows, [["down", b.g]], bwd));
  await c.gemm.runTasks(runs.map(({ seg: { prompt: p }, row0, r0, len }) => {
    const o = 4 * row0 * I, po = 4 * (p.row + r0) * I;
    return [["siluMulVjp", s.gate + po, s.up + po, b.g + o, b.g + o, b.u + o, len * I]];
  }), SILU_COST * rows * I);
  await c.gemm.run([...jobs(b.g, rows, [["gate", b.x]], bwd), ...jobs(b.u, rows, [["up", b.x, true]], bwd)]);
  await c.gemm.runTasks(runs.map(({ seg: { prompt: p }, row0, r0, len }) => {
    const o = 4 * row0 * d;
    return [["rmsnormVjp", s.h1 + 4 * (p.row + r0) * d, w.norms.post, s.rstd2 + 4 * (p.row + r0), b.x + o, b.x + o, len, d]];
  }), ROW_OP_COST * rows * d);
  k.add(g, b.x, g, rows * d);
  // Attention: ga = g Wo (spread back to all rows, zeros elsewhere); (gq, gk, gv) = attention VJP;
  // RoPE and head-norm VJPs; gx = gq Wq + gk Wk + gv Wv; gh = g + rms_in VJP(gx)
  if (last) {
    await c.gemm.run(jobs(g, rows, [["o", b.q]], bwd));
    k.fill(b.att, R * qDim, 0);
    moveRows(c, last, b.att, b.q, qDim, false);
  } else {
    await c.gemm.run(jobs(g, rows, [["o", b.att]], bwd));
  }
  let cost = 0;
  const attn: KernelTask[] = segs.map(({ row, prompt: p }, i) => {
    const gq = b.q + 4 * row * qDim, gk = b.k + 4 * row * kvDim;
    cost += attentionCost(c.dims, p.T);
    return [
      ["attentionVjp", s.qRot + 4 * p.row * qDim, s.kRot + 4 * p.row * kvDim, s.v + 4 * p.row * kvDim, s.probs + 4 * p.probs,
        b.att + 4 * row * qDim, gq, gk, b.v + 4 * row * kvDim, p.T, p.T, H, KV, hd, scale, b.scratch + 4 * i * c.attnScratch],
      ["ropeVjp", gq, gq, c.cos, c.sin, p.T, H, hd],
      ["rmsnormVjp", s.qRaw + 4 * p.row * qDim, w.norms.q, s.qRstd + 4 * p.row * H, gq, gq, p.T * H, hd],
      ["ropeVjp", gk, gk, c.cos, c.sin, p.T, KV, hd],
      ["rmsnormVjp", s.kRaw + 4 * p.row * kvDim, w.norms.k, s.kRstd + 4 * p.row * KV, gk, gk, p.T * KV, hd],
    ];
  });
  await c.gemm.runTasks(attn, cost);
  await c.gemm.run([...jobs(b.q, R, [["q", b.x]], bwd), ...jobs(b.k, R, [["k", b.x, true]], bwd), ...jobs(b.v, R, [["v", b.x, true]], bwd)]);
  await c.gemm.runTasks(segs.map(({ row, prompt: p }) => {
    const o = 4 * row * d;
    return [["rmsnormVjp", s.hIn + 4 * p.row * d, w.norms.input, s.rstd1 + 4 * p.row, b.x + o, b.x + o, p.T, d]];
  }), ROW_OP_COST * R * d);
  if (last) {
    k.fill(gh, R * d, 0);
    moveRows(c, last, gh, last.buf, d, false);
  }
  k.add(gh, b.x, gh, R * d);
}
