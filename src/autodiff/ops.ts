// Differentiable ops over the kernels. Each op computes its outputs with a kernel and records, when
// recording is on, a node whose VJP and JVP rules are themselves written with these ops.
//
// Linear ops (add, scale, linear, rope, slices) have exact rules in both directions, so they can be
// differentiated to any order. Nonlinear ops (rmsnorm, attention, siluMul) save their primal point and
// expose two linear ops at that point, `...Vjp` and `...Jvp`, each the other's transpose.
// Weights (`W`, norm weights, RoPE tables) are constants: a tensor that requires grad there is an error.
import { NotDifferentiableError, Tensor, empty, record, sameShape, zeros, type AutodiffContext, type Cotangents } from "./tensor.js";

function ctxOf(...ts: Tensor[]): AutodiffContext {
  return ts[0].ctx;
}

function expectShape(t: Tensor, shape: readonly number[], what: string): void {
  if (!sameShape(t.shape, shape)) throw new Error(`${what}: expected shape [${shape.join(",")}], got [${t.shape.join(",")}]`);
}

function expectConstant(t: Tensor, what: string): void {
  if (t.requiresGrad) throw new NotDifferentiableError(`${what} is treated as a constant: gradients with respect to it are not implemented`);
}

function expect2d(t: Tensor, what: string): [number, number] {
  if (t.shape.length !== 2) throw new Error(`${what}: expected a 2-D tensor, got shape [${t.shape.join(",")}]`);
  return [t.shape[0], t.shape[1]];
}

/** Run a kernel that needs `floats` of scratch, releasing the scratch afterwards (outputs are allocated before). */
function withScratch<T>(ctx: AutodiffContext, floats: number, fn: (scratch: number) => T): T {
  const heap = ctx.rt.heap;
  const m = heap.mark();
  try {
    return fn(floats > 0 ? heap.allocF32(floats) : 0);
  } finally {
    heap.release(m);
  }
}

function orZeros(t: Tensor | null, like: Tensor): Tensor {
  return t ?? zeros(like.ctx, like.shape);
}

function primalTangentError(op: string): NotDifferentiableError {
  return new NotDifferentiableError(
    `${op}: derivative with respect to its saved primal point (a second derivative through a nonlinear op) is not implemented; ` +
      `only derivatives with respect to the cotangent/tangent are`,
  );
}

// ---------------------------------------------------------------- sums and scaling

/** a + b (same shape) */
export function add(a: Tensor, b: Tensor): Tensor {
  expectShape(b, a.shape, "add");
  const ctx = ctxOf(a);
  const y = empty(ctx, a.shape);
  ctx.rt.k.add(a.ptr, b.ptr, y.ptr, y.size);
  record(ctx, "add", [a, b], [y], {
    vjp: ([g]) => [g, g],
    jvp: ([ta, tb]) => [addOptional(ta, tb)],
  });
  return y;
}

/** a + b where either may be absent (null means zero). */
export function addOptional(a: Tensor | null, b: Tensor | null): Tensor | null {
  if (!a) return b;
  if (!b) return a;
  return add(a, b);
}

/** alpha * x */
export function scale(x: Tensor, alpha: number): Tensor {
  const ctx = ctxOf(x);
  const y = empty(ctx, x.shape);
  ctx.rt.k.scale(x.ptr, alpha, y.ptr, y.size);
  record(ctx, "scale", [x], [y], {
    vjp: ([g]) => [g && scale(g, alpha)],
    jvp: ([t]) => [t && scale(t, alpha)],
  });
  return y;
}

/** x[r, :] + v for every row r. x: [R, C], v: [C] */
export function addRowVector(x: Tensor, v: Tensor): Tensor {
  const [R, C] = expect2d(x, "addRowVector");
  expectShape(v, [C], "addRowVector vector");
  const ctx = ctxOf(x);
  const y = empty(ctx, x.shape);
  ctx.rt.k.addRowVector(x.ptr, v.ptr, y.ptr, R, C);
  record(ctx, "addRowVector", [x, v], [y], {
    vjp: ([g], need) => [g, g && need[1] ? sumRows(g) : null],
    jvp: ([tx, tv]) => {
      if (tx && tv) return [addRowVector(tx, tv)];
      return [tx ?? (tv && broadcastRows(tv, R))];
    },
  });
  return y;
}

/** sum over rows: x [R, C] -> [C] */
export function sumRows(x: Tensor): Tensor {
  const [R, C] = expect2d(x, "sumRows");
  const ctx = ctxOf(x);
  const y = empty(ctx, [C]);
  ctx.rt.k.sumRows(x.ptr, y.ptr, R, C);
  record(ctx, "sumRows", [x], [y], {
    vjp: ([g]) => [g && broadcastRows(g, R)],
    jvp: ([t]) => [t && sumRows(t)],
  });
  return y;
}

/** v [C] repeated as R rows -> [R, C] */
export function broadcastRows(v: Tensor, R: number): Tensor {
  const C = v.size;
  const ctx = ctxOf(v);
  const y = empty(ctx, [R, C]);
  ctx.rt.k.fill(y.ptr, y.size, 0);
  ctx.rt.k.addRowVector(y.ptr, v.ptr, y.ptr, R, C);
  record(ctx, "broadcastRows", [v], [y], {
    vjp: ([g]) => [g && sumRows(g)],
    jvp: ([t]) => [t && broadcastRows(t, R)],
  });
  return y;
}

// ---------------------------------------------------------------- shapes

/** The same data under another shape (a view: no copy). */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== x.size) throw new Error(`reshape: cannot view [${x.shape.join(",")}] as [${shape.join(",")}]`);
  const ctx = ctxOf(x);
  const y = new Tensor(ctx, x.ptr, shape);
  const from = x.shape;
  record(ctx, "reshape", [x], [y], {
    vjp: ([g]) => [g && reshape(g, from)],
    jvp: ([t]) => [t && reshape(t, shape)],
  });
  return y;
}

/** rows [start, start + count) of x [R, C] -> [count, C] */
export function sliceRows(x: Tensor, start: number, count: number): Tensor {
  const [R, C] = expect2d(x, "sliceRows");
  if (start < 0 || count < 0 || start + count > R) throw new Error(`sliceRows: rows [${start}, ${start + count}) outside [0, ${R})`);
  const ctx = ctxOf(x);
  const y = empty(ctx, [count, C]);
  ctx.rt.k.copy(y.ptr, x.ptr + start * C * 4, count * C);
  record(ctx, "sliceRows", [x], [y], {
    vjp: ([g]) => [g && padRows(g, R, start)],
    jvp: ([t]) => [t && sliceRows(t, start, count)],
  });
  return y;
}

/** x [count, C] placed at rows [start, start + count) of an [R, C] zero tensor (the transpose of sliceRows) */
export function padRows(x: Tensor, R: number, start: number): Tensor {
  const [count, C] = expect2d(x, "padRows");
  if (start < 0 || start + count > R) throw new Error(`padRows: rows [${start}, ${start + count}) outside [0, ${R})`);
  const ctx = ctxOf(x);
  const y = zeros(ctx, [R, C]);
  ctx.rt.k.copy(y.ptr + start * C * 4, x.ptr, count * C);
  record(ctx, "padRows", [x], [y], {
    vjp: ([g]) => [g && sliceRows(g, start, count)],
    jvp: ([t]) => [t && padRows(t, R, start)],
  });
  return y;
}

// ---------------------------------------------------------------- linear layers

/** x W^T with W in Hugging Face's [out, in] layout. x: [M, in] -> [M, out] */
export function linear(x: Tensor, W: Tensor): Tensor {
  const [M, K] = expect2d(x, "linear input");
  const [N, Kw] = expect2d(W, "linear weight");
  if (K !== Kw) throw new Error(`linear: input has ${K} features, weight [${N},${Kw}] expects ${Kw}`);
  expectConstant(W, "linear weight");
  const ctx = ctxOf(x);
  const y = empty(ctx, [M, N]);
  const k = ctx.rt.k;
  withScratch(ctx, k.matmulScratchFloats(M, N, K) as number, (s) => k.matmulABt(x.ptr, W.ptr, y.ptr, M, N, K, s, 0));
  record(ctx, "linear", [x], [y], {
    vjp: ([g]) => [g && linearTransposed(g, W)],
    jvp: ([t]) => [t && linear(t, W)],
  });
  return y;
}

/** g W, the transpose of `linear`: g [M, out] -> [M, in] */
export function linearTransposed(g: Tensor, W: Tensor): Tensor {
  const [M, N] = expect2d(g, "linearTransposed input");
  const [Nw, K] = expect2d(W, "linearTransposed weight");
  if (N !== Nw) throw new Error(`linearTransposed: input has ${N} features, weight [${Nw},${K}] expects ${Nw}`);
  expectConstant(W, "linear weight");
  const ctx = ctxOf(g);
  const y = empty(ctx, [M, K]);
  const k = ctx.rt.k;
  // C[M, K] = A[M, N] * B[N, K]
  withScratch(ctx, k.matmulScratchFloats(M, K, N) as number, (s) => k.matmulAB(g.ptr, W.ptr, y.ptr, M, K, N, s, 0));
  record(ctx, "linearTransposed", [g], [y], {
    vjp: ([c]) => [c && linear(c, W)],
    jvp: ([t]) => [t && linearTransposed(t, W)],
  });
  return y;
}

// ---------------------------------------------------------------- RMSNorm

/** w * x / sqrt(mean(x^2) + eps) over the last axis. x: [R, D], w: [D] */
export function rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
  const [R, D] = expect2d(x, "rmsnorm");
  expectShape(w, [D], "rmsnorm weight");
  expectConstant(w, "rmsnorm weight");
  const ctx = ctxOf(x);
  const y = empty(ctx, [R, D]);
  const rstd = empty(ctx, [R]);
  ctx.rt.k.rmsnormForward(x.ptr, w.ptr, y.ptr, rstd.ptr, R, D, eps);
  const at: RmsnormPoint = { x, w, rstd };
  record(ctx, "rmsnorm", [x], [y], {
    vjp: ([g]) => [g && rmsnormVjp(at, g)],
    jvp: ([t]) => [t && rmsnormJvp(at, t)],
  });
  return y;
}

interface RmsnormPoint {
  x: Tensor;
  w: Tensor;
  rstd: Tensor;
}

function rmsnormVjp(at: RmsnormPoint, gy: Tensor): Tensor {
  const [R, D] = at.x.shape;
  const ctx = ctxOf(gy);
  const gx = empty(ctx, [R, D]);
  ctx.rt.k.rmsnormVjp(at.x.ptr, at.w.ptr, at.rstd.ptr, gy.ptr, gx.ptr, R, D);
  record(ctx, "rmsnormVjp", [gy, at.x], [gx], {
    vjp: ([c], need) => {
      if (need[1]) throw primalTangentError("rmsnormVjp");
      return [c && rmsnormJvp(at, c), null];
    },
    jvp: ([t, tx]) => {
      if (tx) throw primalTangentError("rmsnormVjp");
      return [t && rmsnormVjp(at, t)];
    },
  });
  return gx;
}

function rmsnormJvp(at: RmsnormPoint, tx: Tensor): Tensor {
  const [R, D] = at.x.shape;
  const ctx = ctxOf(tx);
  const ty = empty(ctx, [R, D]);
  ctx.rt.k.rmsnormJvp(at.x.ptr, at.w.ptr, at.rstd.ptr, tx.ptr, ty.ptr, R, D);
  record(ctx, "rmsnormJvp", [tx, at.x], [ty], {
    vjp: ([c], need) => {
      if (need[1]) throw primalTangentError("rmsnormJvp");
      return [c && rmsnormVjp(at, c), null];
    },
    jvp: ([t, tp]) => {
      if (tp) throw primalTangentError("rmsnormJvp");
      return [t && rmsnormJvp(at, t)];
    },
  });
  return ty;
}

// ---------------------------------------------------------------- RoPE (linear in x)

export interface RopeTables {
  /** [T, headDim/2] each, constants */
  cos: Tensor;
  sin: Tensor;
}

/** rotate-half rotary embedding of x: [T, heads * headDim] */
export function rope(x: Tensor, tables: RopeTables, heads: number, headDim: number): Tensor {
  return ropeApply(x, tables, heads, headDim, false);
}

function ropeApply(x: Tensor, tables: RopeTables, heads: number, headDim: number, transposed: boolean): Tensor {
  const [T, HD] = expect2d(x, "rope");
  if (HD !== heads * headDim) throw new Error(`rope: ${HD} features is not ${heads} heads x ${headDim}`);
  const ctx = ctxOf(x);
  const y = empty(ctx, [T, HD]);
  const { cos, sin } = tables;
  if (transposed) ctx.rt.k.ropeVjp(x.ptr, y.ptr, cos.ptr, sin.ptr, T, heads, headDim);
  else ctx.rt.k.ropeForward(x.ptr, y.ptr, cos.ptr, sin.ptr, T, heads, headDim);
  record(ctx, transposed ? "ropeTransposed" : "rope", [x], [y], {
    vjp: ([g]) => [g && ropeApply(g, tables, heads, headDim, !transposed)],
    jvp: ([t]) => [t && ropeApply(t, tables, heads, headDim, transposed)],
  });
  return y;
}

// ---------------------------------------------------------------- causal grouped-query attention

export interface AttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** usually headDim^-0.5 */
  scale: number;
}

interface AttentionPoint extends AttentionShape {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  probs: Tensor;
  T: number;
}

/** softmax(scale q k^T + causal mask) v per head. q: [T, heads*hd], k, v: [T, kvHeads*hd] */
export function attention(q: Tensor, k: Tensor, v: Tensor, s: AttentionShape): Tensor {
  const [T, QD] = expect2d(q, "attention q");
  if (QD !== s.heads * s.headDim) throw new Error(`attention: q has ${QD} features, expected ${s.heads} x ${s.headDim}`);
  expectShape(k, [T, s.kvHeads * s.headDim], "attention k");
  expectShape(v, [T, s.kvHeads * s.headDim], "attention v");
  if (s.heads % s.kvHeads !== 0) throw new Error(`attention: ${s.heads} query heads not a multiple of ${s.kvHeads} key/value heads`);
  const ctx = ctxOf(q);
  const out = empty(ctx, [T, QD]);
  const probs = empty(ctx, [s.heads, T, T]);
  ctx.rt.k.attentionForward(q.ptr, k.ptr, v.ptr, out.ptr, probs.ptr, T, T, s.heads, s.kvHeads, s.headDim, s.scale);
  const at: AttentionPoint = { ...s, q, k, v, probs, T };
  record(ctx, "attention", [q, k, v], [out], {
    vjp: ([g]) => (g ? attentionVjp(at, g) : [null, null, null]),
    jvp: ([tq, tk, tv]) => [attentionJvp(at, orZeros(tq, q), orZeros(tk, k), orZeros(tv, v))],
  });
  return out;
}

function attentionScratch(at: AttentionPoint): number {
  return at.q.rt.k.attentionScratchFloats(at.T, at.T, at.heads, at.kvHeads, at.headDim) as number;
}

function attentionVjp(at: AttentionPoint, g: Tensor): Tensor[] {
  const ctx = ctxOf(g);
  const gq = empty(ctx, at.q.shape), gk = empty(ctx, at.k.shape), gv = empty(ctx, at.v.shape);
  const k = ctx.rt.k;
  withScratch(ctx, attentionScratch(at), (s) =>
    k.attentionVjp(at.q.ptr, at.k.ptr, at.v.ptr, at.probs.ptr, g.ptr, gq.ptr, gk.ptr, gv.ptr, at.T, at.T, at.heads, at.kvHeads, at.headDim, at.scale, s),
  );
  record(ctx, "attentionVjp", [g, at.q, at.k, at.v], [gq, gk, gv], {
    vjp: ([cq, ck, cv], need) => {
      if (need[1] || need[2] || need[3]) throw primalTangentError("attentionVjp");
      if (!cq && !ck && !cv) return [null, null, null, null];
      return [attentionJvp(at, orZeros(cq, at.q), orZeros(ck, at.k), orZeros(cv, at.v)), null, null, null];
    },
    jvp: ([t, tq, tk, tv]) => {
      if (tq || tk || tv) throw primalTangentError("attentionVjp");
      return t ? attentionVjp(at, t) : [null, null, null];
    },
  });
  return [gq, gk, gv];
}

function attentionJvp(at: AttentionPoint, tq: Tensor, tk: Tensor, tv: Tensor): Tensor {
  const ctx = ctxOf(tq);
  const tout = empty(ctx, at.q.shape);
  const k = ctx.rt.k;
  withScratch(ctx, attentionScratch(at), (s) =>
    k.attentionJvp(at.q.ptr, at.k.ptr, at.v.ptr, at.probs.ptr, tq.ptr, tk.ptr, tv.ptr, tout.ptr, at.T, at.T, at.heads, at.kvHeads, at.headDim, at.scale, s),
  );
  record(ctx, "attentionJvp", [tq, tk, tv, at.q, at.k, at.v], [tout], {
    vjp: ([c], need) => {
      if (need[3] || need[4] || need[5]) throw primalTangentError("attentionJvp");
      if (!c) return [null, null, null, null, null, null];
      return [...attentionVjp(at, c), null, null, null];
    },
    jvp: ([a, b, d, pq, pk, pv]) => {
      if (pq || pk || pv) throw primalTangentError("attentionJvp");
      if (!a && !b && !d) return [null];
      return [attentionJvp(at, orZeros(a, at.q), orZeros(b, at.k), orZeros(d, at.v))];
    },
  });
  return tout;
}

// ---------------------------------------------------------------- SiLU gate: silu(g) * u

interface SiluPoint {
  g: Tensor;
  u: Tensor;
}

/** silu(g) * u, elementwise (SwiGLU's gate) */
export function siluMul(g: Tensor, u: Tensor): Tensor {
  expectShape(u, g.shape, "siluMul");
  const ctx = ctxOf(g);
  const y = empty(ctx, g.shape);
  ctx.rt.k.siluMulForward(g.ptr, u.ptr, y.ptr, y.size);
  const at: SiluPoint = { g, u };
  record(ctx, "siluMul", [g, u], [y], {
    vjp: ([gy]) => (gy ? siluMulVjp(at, gy) : [null, null]),
    jvp: ([tg, tu]) => [siluMulJvp(at, orZeros(tg, g), orZeros(tu, u))],
  });
  return y;
}

function siluMulVjp(at: SiluPoint, gy: Tensor): Tensor[] {
  const ctx = ctxOf(gy);
  const gg = empty(ctx, at.g.shape), gu = empty(ctx, at.u.shape);
  ctx.rt.k.siluMulVjp(at.g.ptr, at.u.ptr, gy.ptr, gg.ptr, gu.ptr, gy.size);
  record(ctx, "siluMulVjp", [gy, at.g, at.u], [gg, gu], {
    vjp: ([cg, cu], need) => {
      if (need[1] || need[2]) throw primalTangentError("siluMulVjp");
      if (!cg && !cu) return [null, null, null];
      return [siluMulJvp(at, orZeros(cg, at.g), orZeros(cu, at.u)), null, null];
    },
    jvp: ([t, tg, tu]) => {
      if (tg || tu) throw primalTangentError("siluMulVjp");
      return t ? siluMulVjp(at, t) : [null, null];
    },
  });
  return [gg, gu];
}

function siluMulJvp(at: SiluPoint, tg: Tensor, tu: Tensor): Tensor {
  const ctx = ctxOf(tg);
  const ty = empty(ctx, at.g.shape);
  ctx.rt.k.siluMulJvp(at.g.ptr, at.u.ptr, tg.ptr, tu.ptr, ty.ptr, ty.size);
  record(ctx, "siluMulJvp", [tg, tu, at.g, at.u], [ty], {
    vjp: ([c], need) => {
      if (need[2] || need[3]) throw primalTangentError("siluMulJvp");
      if (!c) return [null, null, null, null];
      return [...siluMulVjp(at, c), null, null];
    },
    jvp: ([a, b, pg, pu]) => {
      if (pg || pu) throw primalTangentError("siluMulJvp");
      if (!a && !b) return [null];
      return [siluMulJvp(at, orZeros(a, at.g), orZeros(b, at.u))];
    },
  });
  return ty;
}

export type { Cotangents };
