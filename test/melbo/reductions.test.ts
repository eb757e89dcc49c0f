// The differentiable reductions MELBO's loss is built from (src/autodiff/reductions.ts): forward
// against plain float64 loops; JVPs against central finite differences of those loops; VJPs against
// JVPs by the adjoint identity <g, J t> = <J^T g, t>; second derivatives of the bilinear ops through
// createGraph; and the refusal to differentiate powScalar's slope with respect to its primal point.
import { beforeAll, describe, expect, it } from "vitest";
import { AutodiffContext, fromArray, NotDifferentiableError, type Tensor } from "../../src/autodiff/tensor.js";
import { grad, jvpGraph } from "../../src/autodiff/grad.js";
import { reshape } from "../../src/autodiff/ops.js";
import { gatherRows, powScalar, rowDots, rowSumSquares, scaleRows, scatterRows, sub, sumAll } from "../../src/autodiff/reductions.js";
import { createNodeRuntime } from "../../src/node/runtime.js";
import { maxRelErr } from "../helpers/model.js";
import { randn, rng } from "../helpers/random.js";

let ctx: AutodiffContext;
beforeAll(async () => {
  ctx = new AutodiffContext(await createNodeRuntime());
});

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

const R = 5, C = 13; // C not a multiple of 4: the kernels' scalar tails run

/** Check one op f (inputs -> one output) in float64 terms: forward, JVP by central FD, VJP by adjoint. */
function checkOp(name: string, f: (xs: Tensor[]) => Tensor, ref: (xs: Float64Array[]) => Float64Array, shapes: number[][], opts: { positive?: boolean } = {}) {
  it(`${name}: forward, JVP (finite differences) and VJP (adjoint identity)`, () => {
    ctx.rt.heap.scope(() => {
      const r = rng(name.length * 7 + 1);
      const xsData = shapes.map((s) => {
        const n = s.reduce((a, b) => a * b, 1);
        const v = randn(r, n);
        return opts.positive ? v.map((x) => Math.abs(x) + 0.5) : v;
      });
      const xs = xsData.map((v, i) => fromArray(ctx, v, shapes[i], true));
      const y = ctx.withGrad(true, () => f(xs));
      const yRef = ref(xsData.map((v) => Float64Array.from(v)));
      expect(maxRelErr(y.toArray(), yRef), "forward").toBeLessThan(1e-6);

      const ts = shapes.map((s) => randn(r, s.reduce((a, b) => a * b, 1), 0.5));
      const [jt] = jvpGraph(y, xs, ts.map((t, i) => fromArray(ctx, t, shapes[i])));
      const h = 1e-5;
      const plus = ref(xsData.map((v, i) => Float64Array.from(v, (x, k) => x + h * ts[i][k])));
      const minus = ref(xsData.map((v, i) => Float64Array.from(v, (x, k) => x - h * ts[i][k])));
      const fd = plus.map((p, k) => (p - minus[k]) / (2 * h));
      expect(maxRelErr(jt!.toArray(), fd), "JVP vs finite differences").toBeLessThan(1e-4);

      const g = randn(r, y.size);
      const gs = grad(y, xs, fromArray(ctx, g, y.shape));
      const lhs = dot(g, jt!.toArray());
      const rhs = gs.reduce((s, gi, i) => s + dot(gi!.toArray(), ts[i]), 0);
      expect(Math.abs(lhs - rhs) / Math.max(Math.abs(lhs), 1e-12), "adjoint identity").toBeLessThan(1e-5);
    });
  });
}

describe("reductions", () => {
  checkOp("sub", ([a, b]) => sub(a, b), ([a, b]) => a.map((x, i) => x - b[i]), [[R, C], [R, C]]);
  checkOp("rowDots", ([a, b]) => rowDots(a, b), ([a, b]) => Float64Array.from({ length: R }, (_, r) => dot(a.subarray(r * C, (r + 1) * C), b.subarray(r * C, (r + 1) * C))), [[R, C], [R, C]]);
  checkOp("scaleRows", ([x, s]) => scaleRows(x, s), ([x, s]) => x.map((v, i) => v * s[Math.floor(i / C)]), [[R, C], [R]]);
  checkOp("rowSumSquares", ([x]) => rowSumSquares(x), ([x]) => Float64Array.from({ length: R }, (_, r) => dot(x.subarray(r * C, (r + 1) * C), x.subarray(r * C, (r + 1) * C))), [[R, C]]);
  checkOp("sumAll", ([x]) => sumAll(x), ([x]) => Float64Array.of(x.reduce((a, b) => a + b, 0)), [[R, C]]);
  for (const a of [1.5, 0.5, 2, 1]) {
    checkOp(`powScalar ^${a}`, ([x]) => powScalar(x, a), ([x]) => x.map((v) => Math.pow(v, a)), [[R * C]], { positive: true });
  }
  const rows = [4, 0, 2, 2];
  const weights = [0.5, 1, -2, 3];
  checkOp("gatherRows (weighted, a repeated row)", ([x]) => gatherRows(x, rows, weights), ([x]) => {
    const out = new Float64Array(rows.length * C);
    rows.forEach((r, i) => { for (let c = 0; c < C; c++) out[i * C + c] = weights[i] * x[r * C + c]; });
    return out;
  }, [[R, C]]);
  checkOp("scatterRows (weighted, a repeated row)", ([g]) => scatterRows(g, R, rows, weights), ([g]) => {
    const out = new Float64Array(R * C);
    rows.forEach((r, i) => { for (let c = 0; c < C; c++) out[r * C + c] += weights[i] * g[i * C + c]; });
    return out;
  }, [[rows.length, C]]);
  checkOp("a MELBO-like loss: sum_t ||x_t - y_t||^3", ([x, y]) => sumAll(powScalar(rowSumSquares(sub(x, y)), 1.5)), ([x, y]) => {
    let s = 0;
    for (let r = 0; r < R; r++) {
      let q = 0;
      for (let c = 0; c < C; c++) q += (x[r * C + c] - y[r * C + c]) ** 2;
      s += q ** 1.5;
    }
    return Float64Array.of(s);
  }, [[R, C], [R, C]]);

  it("powScalar at 0: value 0, slope 0 for a != 1 (no NaN, no Infinity)", () => {
    ctx.rt.heap.scope(() => {
      for (const a of [0.5, 2]) {
        const x = fromArray(ctx, [0, 4], [2], true);
        const y = ctx.withGrad(true, () => powScalar(x, a));
        const [g] = grad(y, x, fromArray(ctx, [1, 1], [2]));
        expect(Array.from(g!.toArray())).toEqual([0, Math.fround(a * Math.pow(4, a - 1))]);
      }
    });
  });

  it("second derivatives of the bilinear ops: d/dx <grad ||x||^2, v> = 2 v (createGraph)", () => {
    ctx.rt.heap.scope(() => {
      const r = rng(3);
      const x = fromArray(ctx, randn(r, R * C), [R, C], true);
      const v = randn(r, R * C);
      const f = ctx.withGrad(true, () => sumAll(rowSumSquares(x)));
      const [g] = grad(f, x, fromArray(ctx, [1], [1]), { createGraph: true });
      const inner = ctx.withGrad(true, () => sumAll(reshape(rowDots(reshape(g!, [1, R * C]), fromArray(ctx, v, [1, R * C])), [1])));
      const [hv] = grad(inner, x, fromArray(ctx, [1], [1]));
      expect(maxRelErr(hv!.toArray(), Array.from(v, (t) => 2 * t))).toBeLessThan(1e-6);
    });
  });

  it("a second derivative through powScalar's saved point throws instead of dropping a term", () => {
    ctx.rt.heap.scope(() => {
      const x = fromArray(ctx, [1, 2, 3], [3], true);
      const y = ctx.withGrad(true, () => sumAll(powScalar(x, 3)));
      const [g] = grad(y, x, fromArray(ctx, [1], [1]), { createGraph: true });
      expect(() => grad(sumAll(g!), x, fromArray(ctx, [1], [1]))).toThrow(NotDifferentiableError);
    });
  });

  it("shape errors name the op", () => {
    ctx.rt.heap.scope(() => {
      const a = fromArray(ctx, new Float32Array(6), [2, 3]);
      expect(() => rowDots(a, fromArray(ctx, new Float32Array(6), [3, 2]))).toThrow(/rowDots/);
      expect(() => gatherRows(a, [2])).toThrow(/gatherRows: row 2 outside \[0, 2\)/);
      expect(() => powScalar(fromArray(ctx, [-1], [1]), 2)).toThrow(/negative base/);
    });
  });
});
