// Differentiable reductions and row selections, for losses built on model activations (MELBO's
// `sum_t ||target_t(sv) - target_t(0)||^p`) and for targets made of chosen, weighted token positions.
//
// Same rules as ops.ts: every op records a node whose VJP and JVP are written with ops. The bilinear
// ops (rowDots, scaleRows) and the linear ones (sub, gatherRows, scatterRows) have exact rules in every
// argument, so they differentiate to any order. powScalar is nonlinear: like rmsnorm it saves its
// primal point and exposes one linear map there (a diagonal, its own transpose); a derivative with
// respect to that saved point throws NotDifferentiableError rather than silently dropping a term.
//
// Only existing kernels are used (sub, dot, scale, copy, axpy, fill); the per-row loops run on the
// host because R (token positions) is small next to C (hidden size), where the kernels do the work.
import { addOptional, reshape, sumRows } from "./ops.js";
import { NotDifferentiableError, Tensor, empty, record, sameShape, zeros, type AutodiffContext } from "./tensor.js";

function ctxOf(t: Tensor): AutodiffContext {
  return t.ctx;
}

function expect2d(t: Tensor, what: string): [number, number] {
  if (t.shape.length !== 2) throw new Error(`${what}: expected a 2-D tensor, got shape [${t.shape.join(",")}]`);
  return [t.shape[0], t.shape[1]];
}

function expectShape(t: Tensor, shape: readonly number[], what: string): void {
  if (!sameShape(t.shape, shape)) throw new Error(`${what}: expected shape [${shape.join(",")}], got [${t.shape.join(",")}]`);
}

// ---------------------------------------------------------------- differences

/** a - b (same shape) */
export function sub(a: Tensor, b: Tensor): Tensor {
  expectShape(b, a.shape, "sub");
  const ctx = ctxOf(a);
  const y = empty(ctx, a.shape);
  ctx.rt.k.sub(a.ptr, b.ptr, y.ptr, y.size);
  record(ctx, "sub", [a, b], [y], {
    vjp: ([g], need) => [g && need[0] ? g : null, g && need[1] ? negate(g) : null],
    jvp: ([ta, tb]) => [tb ? (ta ? sub(ta, tb) : negate(tb)) : ta],
  });
  return y;
}

/** -x, recorded (linear). */
function negate(x: Tensor): Tensor {
  const ctx = ctxOf(x);
  const y = empty(ctx, x.shape);
  ctx.rt.k.scale(x.ptr, -1, y.ptr, y.size);
  record(ctx, "negate", [x], [y], {
    vjp: ([g]) => [g && negate(g)],
    jvp: ([t]) => [t && negate(t)],
  });
  return y;
}

// ---------------------------------------------------------------- bilinear row ops

/** Per-row inner products: out[r] = <a[r, :], b[r, :]>. a, b: [R, C] -> [R]. Bilinear. */
export function rowDots(a: Tensor, b: Tensor): Tensor {
  const [R, C] = expect2d(a, "rowDots");
  expectShape(b, [R, C], "rowDots b");
  const ctx = ctxOf(a);
  const y = empty(ctx, [R]);
  const k = ctx.rt.k;
  // Kernel results are f64; the f32 store happens once per row.
  const out = new Float32Array(R);
  for (let r = 0; r < R; r++) out[r] = k.dot(a.ptr + r * C * 4, b.ptr + r * C * 4, C) as number;
  y.view().set(out);
  record(ctx, "rowDots", [a, b], [y], {
    vjp: ([g], need) => [g && need[0] ? scaleRows(b, g) : null, g && need[1] ? scaleRows(a, g) : null],
    jvp: ([ta, tb]) => [addOptional(ta && rowDots(ta, b), tb && rowDots(a, tb))],
  });
  return y;
}

/** Row r of x times s[r]. x: [R, C], s: [R] -> [R, C]. Bilinear. */
export function scaleRows(x: Tensor, s: Tensor): Tensor {
  const [R, C] = expect2d(x, "scaleRows");
  expectShape(s, [R], "scaleRows scales");
  const ctx = ctxOf(x);
  const y = empty(ctx, [R, C]);
  const k = ctx.rt.k;
  const sv = s.toArray();
  for (let r = 0; r < R; r++) k.scale(x.ptr + r * C * 4, sv[r], y.ptr + r * C * 4, C);
  record(ctx, "scaleRows", [x, s], [y], {
    vjp: ([g], need) => [g && need[0] ? scaleRows(g, s) : null, g && need[1] ? rowDots(g, x) : null],
    jvp: ([tx, ts]) => [addOptional(tx && scaleRows(tx, s), ts && scaleRows(x, ts))],
  });
  return y;
}

/** Squared Euclidean norm of each row: x [R, C] -> [R]. */
export function rowSumSquares(x: Tensor): Tensor {
  return rowDots(x, x);
}

/** Sum of all entries -> [1]. */
export function sumAll(x: Tensor): Tensor {
  return sumRows(reshape(x, [x.size, 1]));
}

// ---------------------------------------------------------------- elementwise power

interface PowPoint {
  x: Tensor;
  a: number;
  /** d(x^a)/dx at x, a constant. */
  slope: Float32Array;
}

/**
 * x^a elementwise, for x >= 0 (norms, sums of squares). At x = 0 the slope is taken as 0 for a != 1
 * (the limit for a > 1; a subgradient choice for a < 1, where the true slope is infinite).
 */
export function powScalar(x: Tensor, a: number): Tensor {
  if (!Number.isFinite(a)) throw new Error(`powScalar: exponent ${a} is not finite`);
  const ctx = ctxOf(x);
  const y = empty(ctx, x.shape);
  const xv = x.toArray();
  const yv = new Float32Array(xv.length);
  const slope = new Float32Array(xv.length);
  for (let i = 0; i < xv.length; i++) {
    const xi = xv[i];
    if (xi < 0) throw new Error(`powScalar: negative base ${xi} at ${i}`);
    yv[i] = Math.pow(xi, a);
    slope[i] = a === 1 ? 1 : a === 0 || xi === 0 ? 0 : a * Math.pow(xi, a - 1);
  }
  y.view().set(yv);
  const at: PowPoint = { x, a, slope };
  record(ctx, "powScalar", [x], [y], {
    vjp: ([g]) => [g && powSlope(at, g)],
    jvp: ([t]) => [t && powSlope(at, t)],
  });
  return y;
}

/** The linear map t -> slope * t at the saved point: diagonal, so it is its own VJP and JVP. */
function powSlope(at: PowPoint, t: Tensor): Tensor {
  const ctx = ctxOf(t);
  const y = empty(ctx, t.shape);
  const tv = t.toArray();
  for (let i = 0; i < tv.length; i++) tv[i] *= at.slope[i];
  y.view().set(tv);
  record(ctx, "powSlope", [t, at.x], [y], {
    vjp: ([g], need) => {
      if (need[1]) throw primalError();
      return [g && powSlope(at, g), null];
    },
    jvp: ([tt, tx]) => {
      if (tx) throw primalError();
      return [tt && powSlope(at, tt)];
    },
  });
  return y;
}

function primalError(): NotDifferentiableError {
  return new NotDifferentiableError("powSlope: derivative with respect to the saved primal point (a second derivative of powScalar) is not implemented");
}

// ---------------------------------------------------------------- weighted row selection

function checkRows(R: number, rows: readonly number[], weights: readonly number[] | null | undefined, what: string): void {
  for (const r of rows) if (!Number.isInteger(r) || r < 0 || r >= R) throw new Error(`${what}: row ${r} outside [0, ${R})`);
  if (weights && weights.length !== rows.length) throw new Error(`${what}: ${weights.length} weights for ${rows.length} rows`);
}

/** y[i, :] = w[i] * x[rows[i], :]. x: [R, C] -> [n, C] (n = rows.length; weights default 1). Linear. */
export function gatherRows(x: Tensor, rows: readonly number[], weights?: readonly number[] | null): Tensor {
  const [R, C] = expect2d(x, "gatherRows");
  checkRows(R, rows, weights, "gatherRows");
  const ctx = ctxOf(x);
  const y = empty(ctx, [rows.length, C]);
  const k = ctx.rt.k;
  rows.forEach((r, i) => {
    const w = weights ? weights[i] : 1;
    if (w === 1) k.copy(y.ptr + i * C * 4, x.ptr + r * C * 4, C);
    else k.scale(x.ptr + r * C * 4, w, y.ptr + i * C * 4, C);
  });
  record(ctx, "gatherRows", [x], [y], {
    vjp: ([g]) => [g && scatterRows(g, R, rows, weights)],
    jvp: ([t]) => [t && gatherRows(t, rows, weights)],
  });
  return y;
}

/** The transpose of gatherRows: out [R, C] zeros, then out[rows[i], :] += w[i] * g[i, :]. Linear. */
export function scatterRows(g: Tensor, R: number, rows: readonly number[], weights?: readonly number[] | null): Tensor {
  const [n, C] = expect2d(g, "scatterRows");
  if (n !== rows.length) throw new Error(`scatterRows: ${n} rows for ${rows.length} indices`);
  checkRows(R, rows, weights, "scatterRows");
  const ctx = ctxOf(g);
  const y = zeros(ctx, [R, C]);
  const k = ctx.rt.k;
  // axpy accumulates, so a repeated index receives the sum of its rows, as the transpose requires.
  rows.forEach((r, i) => k.axpy(weights ? weights[i] : 1, g.ptr + i * C * 4, y.ptr + r * C * 4, C));
  record(ctx, "scatterRows", [g], [y], {
    vjp: ([c]) => [c && gatherRows(c, rows, weights)],
    jvp: ([t]) => [t && scatterRows(t, R, rows, weights)],
  });
  return y;
}
