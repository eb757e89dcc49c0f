// The autodiff on a composite graph (an attention block and an MLP block with residuals):
// the seed's double VJP equals forward mode; the adjoint identity holds; unsupported derivatives throw;
// and PyTorch (torch.autograd.grad with create_graph=True) computes the same numbers.
import { describe, expect, it } from "vitest";
import { AutodiffContext, NotDifferentiableError, Tensor, fromArray, zeros } from "../../src/autodiff/tensor.js";
import { add, attention, linear, reshape, rmsnorm, rope, siluMul, scale, sliceRows, type RopeTables } from "../../src/autodiff/ops.js";
import { grad, jvp, jvpGraph } from "../../src/autodiff/grad.js";
import { ropeTablesF32 } from "../../src/model/qwen3.js";
import { createNodeRuntime } from "../../src/node/runtime.js";
import { dot } from "../../src/linalg/dense.js";
import { randn, rng } from "../helpers/random.js";
import { maxRelErr } from "../helpers/model.js";
import { itWithTorch, runPython } from "../helpers/torch.js";

const rt = await createNodeRuntime();
const ctx = new AutodiffContext(rt);

const cfg = { T: 7, d: 19, heads: 4, kvHeads: 2, headDim: 6, inter: 23, eps: 1e-6, theta: 10000 };
const r = rng(2024);
const W = {
  ln1: Float32Array.from(randn(r, cfg.d), (x) => 1 + 0.1 * x),
  q: randn(r, cfg.heads * cfg.headDim * cfg.d, 1 / Math.sqrt(cfg.d)),
  k: randn(r, cfg.kvHeads * cfg.headDim * cfg.d, 1 / Math.sqrt(cfg.d)),
  v: randn(r, cfg.kvHeads * cfg.headDim * cfg.d, 1 / Math.sqrt(cfg.d)),
  qn: Float32Array.from(randn(r, cfg.headDim), (x) => 1 + 0.1 * x),
  kn: Float32Array.from(randn(r, cfg.headDim), (x) => 1 + 0.1 * x),
  o: randn(r, cfg.d * cfg.heads * cfg.headDim, 1 / Math.sqrt(cfg.heads * cfg.headDim)),
  ln2: Float32Array.from(randn(r, cfg.d), (x) => 1 + 0.1 * x),
  gate: randn(r, cfg.inter * cfg.d, 1 / Math.sqrt(cfg.d)),
  up: randn(r, cfg.inter * cfg.d, 1 / Math.sqrt(cfg.d)),
  down: randn(r, cfg.d * cfg.inter, 1 / Math.sqrt(cfg.inter)),
};
const shapes: Record<keyof typeof W, number[]> = {
  ln1: [cfg.d], q: [cfg.heads * cfg.headDim, cfg.d], k: [cfg.kvHeads * cfg.headDim, cfg.d], v: [cfg.kvHeads * cfg.headDim, cfg.d],
  qn: [cfg.headDim], kn: [cfg.headDim], o: [cfg.d, cfg.heads * cfg.headDim], ln2: [cfg.d],
  gate: [cfg.inter, cfg.d], up: [cfg.inter, cfg.d], down: [cfg.d, cfg.inter],
};
const w = Object.fromEntries(Object.entries(W).map(([k, v]) => [k, fromArray(ctx, v, shapes[k as keyof typeof W])])) as Record<keyof typeof W, Tensor>;
const tabs = ropeTablesF32(cfg.T, cfg.headDim, cfg.theta);
const tables: RopeTables = { cos: fromArray(ctx, tabs.cos, [cfg.T, cfg.headDim / 2]), sin: fromArray(ctx, tabs.sin, [cfg.T, cfg.headDim / 2]) };

/** The block, as test/python/composite_block.py writes it in torch. */
function block(x: Tensor): Tensor {
  const { T, heads, kvHeads, headDim, eps } = cfg;
  const h = rmsnorm(x, w.ln1, eps);
  const headNorm = (t: Tensor, n: number, wt: Tensor) => reshape(rmsnorm(reshape(t, [T * n, headDim]), wt, eps), [T, n * headDim]);
  const q = rope(headNorm(linear(h, w.q), heads, w.qn), tables, heads, headDim);
  const k = rope(headNorm(linear(h, w.k), kvHeads, w.kn), tables, kvHeads, headDim);
  const v = linear(h, w.v);
  const x1 = add(x, linear(attention(q, k, v, { heads, kvHeads, headDim, scale: 1 / Math.sqrt(headDim) }), w.o));
  const h2 = rmsnorm(x1, w.ln2, eps);
  return add(x1, linear(siluMul(linear(h2, w.gate), linear(h2, w.up)), w.down));
}

const x0 = randn(rng(1), cfg.T * cfg.d);
const vDir = randn(rng(2), cfg.T * cfg.d);
const cot = randn(rng(3), cfg.T * cfg.d);

function seedDoubleVjp() {
  const x = fromArray(ctx, x0, [cfg.T, cfg.d], true);
  const y = block(x);
  const u = zeros(ctx, y.shape, true);
  const [g] = grad(y, x, u, { createGraph: true });
  const [jv] = grad(g!, u, fromArray(ctx, vDir, [cfg.T, cfg.d]));
  const [jtjv] = grad(y, x, jv!.detach());
  const [vjp] = grad(y, x, fromArray(ctx, cot, y.shape));
  return { x, y, u, g: g!, jv: jv!, jtjv: jtjv!, vjp: vjp! };
}

describe("autodiff on an attention + MLP block", () => {
  it("double VJP (the seed's trick) gives J v equal to forward mode, and J^T J v equal to vjp(jvp(v))", () => {
    rt.heap.scope(() => {
      const s = seedDoubleVjp();
      const [, jvFwd] = jvp(block, fromArray(ctx, x0, [cfg.T, cfg.d]), fromArray(ctx, vDir, [cfg.T, cfg.d]));
      expect(maxRelErr(s.jv.toArray(), jvFwd.toArray())).toBeLessThan(1e-6);
      const [jtjv2] = grad(s.y, s.x, jvFwd.detach());
      expect(maxRelErr(s.jtjv.toArray(), jtjv2!.toArray())).toBeLessThan(1e-6);
    });
  });

  it("adjoint identity <c, J v> = <J^T c, v>", () => {
    rt.heap.scope(() => {
      const s = seedDoubleVjp();
      const [jv] = jvpGraph(s.y, s.x, fromArray(ctx, vDir, [cfg.T, cfg.d]));
      expect(dot(cot, jv!.toArray()) / dot(s.vjp.toArray(), vDir)).toBeCloseTo(1, 5);
    });
  });

  it("J v matches central finite differences of the block", () => {
    rt.heap.scope(() => {
      const hStep = 1e-2;
      const f = (sgn: number) => ctx.noGrad(() => block(fromArray(ctx, Float32Array.from(x0, (x, i) => x + sgn * hStep * vDir[i]), [cfg.T, cfg.d])).toArray());
      const yp = f(1), ym = f(-1);
      const fd = Array.from(yp, (a, i) => (a - ym[i]) / (2 * hStep));
      const [, jv] = jvp(block, fromArray(ctx, x0, [cfg.T, cfg.d]), fromArray(ctx, vDir, [cfg.T, cfg.d]));
      // f32 finite differences: truncation O(h^2) plus rounding O(eps/h); 1e-3 relative is their noise floor.
      expect(maxRelErr(jv.toArray(), fd)).toBeLessThan(2e-3);
    });
  });

  it("linear ops are differentiable to any order: second derivative of a scaled slice is exact", () => {
    rt.heap.scope(() => {
      const x = fromArray(ctx, x0, [cfg.T, cfg.d], true);
      const y = scale(sliceRows(x, 2, 3), 2.5);
      const u = zeros(ctx, y.shape, true);
      const [g] = grad(y, x, u, { createGraph: true });
      const c = fromArray(ctx, randn(rng(4), cfg.T * cfg.d), [cfg.T, cfg.d]);
      const [back] = grad(g!, u, c);
      const cv = c.toArray(), bv = back!.toArray();
      for (let i = 0; i < 3 * cfg.d; i++) expect(bv[i]).toBeCloseTo(2.5 * cv[2 * cfg.d + i], 5);
    });
  });

  it("asking for a true second derivative through a nonlinear op throws, never returns zeros", () => {
    rt.heap.scope(() => {
      const s = seedDoubleVjp();
      // d g / d x (g = J^T u) needs the Hessian of the block: not implemented.
      expect(() => grad(s.g, s.x, fromArray(ctx, cot, s.g.shape))).toThrow(NotDifferentiableError);
      expect(() => grad(s.g, s.x, fromArray(ctx, cot, s.g.shape))).toThrow(/second derivative/);
    });
  });

  it("an input the outputs do not use is an error unless allowUnused", () => {
    rt.heap.scope(() => {
      const x = fromArray(ctx, x0, [cfg.T, cfg.d], true);
      const other = zeros(ctx, [3], true);
      const y = scale(x, 2);
      expect(() => grad(y, other, fromArray(ctx, cot, y.shape))).toThrow(/not used/);
      expect(grad(y, [x, other], fromArray(ctx, cot, y.shape), { allowUnused: true })[1]).toBeNull();
    });
  });

  it("a weight that requires grad is refused with a clear error", () => {
    rt.heap.scope(() => {
      const x = fromArray(ctx, x0, [cfg.T, cfg.d], true);
      const wq = fromArray(ctx, W.q, shapes.q, true);
      expect(() => linear(x, wq)).toThrow(/constant/);
    });
  });

  for (const dtype of ["float32", "float64"] as const) {
    itWithTorch(`agrees with torch.autograd.grad(create_graph=True) in ${dtype}`, () => {
      const theirs = JSON.parse(
        runPython(["test/python/composite_block.py"], {
          input: JSON.stringify({
            dtype,
            cfg: { heads: cfg.heads, kv_heads: cfg.kvHeads, head_dim: cfg.headDim, eps: cfg.eps, theta: cfg.theta },
            weights: Object.fromEntries(Object.entries(W).map(([k, v]) => [k, { data: Array.from(v), shape: shapes[k as keyof typeof W] }])),
            x: Array.from(x0), x_shape: [cfg.T, cfg.d], v: Array.from(vDir), c: Array.from(cot),
          }),
        }),
      ) as Record<string, number[]>;
      rt.heap.scope(() => {
        const s = seedDoubleVjp();
        // float32 both sides: each side rounds differently; 1e-5 of the largest entry is the stated tolerance.
        const tol = 1e-5;
        expect(maxRelErr(s.y.toArray(), theirs.y), "forward").toBeLessThan(tol);
        expect(maxRelErr(s.jv.toArray(), theirs.jv), "J v").toBeLessThan(tol);
        expect(maxRelErr(s.jtjv.toArray(), theirs.jtjv), "J^T J v").toBeLessThan(tol);
        expect(maxRelErr(s.vjp.toArray(), theirs.vjp), "J^T c").toBeLessThan(tol);
      });
    });
  }
});
