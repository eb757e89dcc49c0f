// The steering Jacobian: explicit J (by forward mode) against central finite differences of the
// float64 reference model; the adjoint identity; the seed's double VJP against forward mode; and the
// block power iteration against an exact SVD of the explicitly formed J.
import { afterAll, describe, expect, it } from "vitest";
import { SteeringJacobian } from "../../src/jacobian/steering-jacobian.js";
import { blockPowerIteration } from "../../src/solvers/block-power.js";
import { svd, dot } from "../../src/linalg/dense.js";
import { writeTempCheckpoint, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadRefWeights, refTarget } from "../helpers/qwen3-reference.js";
import { explicitJacobian, loadTestModel, maxRelErr } from "../helpers/model.js";
import { randn, rng } from "../helpers/random.js";

const cleanup: TempCheckpoint[] = [];
afterAll(() => cleanup.forEach((c) => c.remove()));

const explicitJ = explicitJacobian;

const cases = [
  { name: "GQA 2, head_dim 12 != 32/4, F32", shape: SMALL_SHAPE, dtype: "F32" as const, shards: 1, S: 0, T: 1, K: 3 },
  { name: "GQA 1, S = T", shape: { ...SMALL_SHAPE, num_attention_heads: 2, num_key_value_heads: 2, head_dim: 16 }, dtype: "F32" as const, shards: 1, S: 1, T: 1, K: 2 },
  { name: "GQA 4, odd hidden 33, BF16 in 3 shards", shape: { ...SMALL_SHAPE, hidden_size: 33, num_key_value_heads: 1, head_dim: 10, num_hidden_layers: 3 }, dtype: "BF16" as const, shards: 3, S: 0, T: 2, K: 4 },
];

describe("steering Jacobian", () => {
  for (const c of cases) {
    describe(c.name, async () => {
      const ck = writeTempCheckpoint(c.shape, { seed: 11, dtype: c.dtype, shards: c.shards });
      cleanup.push(ck);
      const { model, ckpt } = await loadTestModel(ck.dir);
      const prompts = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2]];
      const site = { sourceLayer: c.S, targetLayer: c.T, positions: c.K };
      const J = new SteeringJacobian(model, prompts, site);
      const Jrows = explicitJ(J);
      const d = J.inputDim;

      it("J v matches central finite differences of the float64 reference model", () => {
        const ref = loadRefWeights(ckpt.config, ckpt.tensors);
        const v = randn(rng(5), d);
        const jv = J.apply(v);
        const h = 1e-4;
        const fd: number[] = [];
        for (const p of prompts) {
          const plus = refTarget(ref, p, c.S, c.T, c.K, Array.from(v, (x) => h * x));
          const minus = refTarget(ref, p, c.S, c.T, c.K, Array.from(v, (x) => -h * x));
          for (let i = 0; i < plus.length; i++) fd.push((plus[i] - minus[i]) / (2 * h));
        }
        expect(maxRelErr(jv, fd)).toBeLessThan(1e-4);
      });

      it("adjoint identity <u, J v> = <J^T u, v>", () => {
        const r = rng(9);
        const v = randn(r, d), u = randn(r, J.outputDim);
        const lhs = dot(u, J.apply(v)), rhs = dot(J.applyTransposed(u), v);
        expect(Math.abs(lhs - rhs) / Math.abs(lhs)).toBeLessThan(1e-5);
      });

      it("the seed's double VJP gives the same J^T J v as forward mode, and as J^T (J v) from explicit J", () => {
        const v = randn(rng(13), d);
        const a = J.normalProduct(v, "double-vjp");
        const b = J.normalProduct(v, "jvp");
        expect(maxRelErr(a, b)).toBeLessThan(1e-5);
        const jv = Jrows.map((row) => dot(row, v));
        const exact = Array.from({ length: d }, (_, j) => Jrows.reduce((s, row, i) => s + row[j] * jv[i], 0));
        expect(maxRelErr(a, exact)).toBeLessThan(1e-5);
      });

      for (const method of ["jvp", "double-vjp"] as const) {
        it(`block power iteration (${method}) finds the top singular pairs of the explicit J`, () => {
          const n = 4;
          const exact = svd(Jrows, d);
          const res = blockPowerIteration(
            { dim: d, apply: (x) => Float64Array.from(J.normalProduct(Float32Array.from(x), method)) },
            { numVectors: n, maxIters: 500, tol: 1e-7, seed: 1 },
          );
          for (let i = 0; i < n; i++) {
            expect(Math.abs(res.singularValues[i] - exact.values[i]) / exact.values[i], `sigma ${i}`).toBeLessThan(1e-4);
            // Vectors only where the gap to the neighbours allows it.
            const gap = Math.min(i > 0 ? exact.values[i - 1] - exact.values[i] : Infinity, exact.values[i] - exact.values[i + 1]) / exact.values[0];
            if (gap > 1e-2) expect(Math.abs(dot(res.vectors[i], exact.right[i])), `|cos| vector ${i}`).toBeGreaterThan(0.9999);
            // Sign convention: the largest-magnitude entry is positive.
            const v = res.vectors[i];
            const big = v.reduce((bi, x, k) => (Math.abs(x) > Math.abs(v[bi]) ? k : bi), 0);
            expect(v[big]).toBeGreaterThan(0);
          }
          expect(res.converged).toBe(true);
        });
      }
    });
  }

  it("at a steered point (--at) J changes and still matches finite differences", async () => {
    const ck = writeTempCheckpoint(SMALL_SHAPE, { seed: 12 });
    cleanup.push(ck);
    const { model, ckpt } = await loadTestModel(ck.dir);
    const ref = loadRefWeights(ckpt.config, ckpt.tensors);
    const d = ckpt.config.hiddenSize;
    const at = randn(rng(77), d, 3);
    const prompt = [5, 4, 3, 2, 1, 0];
    const J0 = new SteeringJacobian(model, [prompt], { sourceLayer: 0, targetLayer: 1, positions: 2 });
    const Ja = new SteeringJacobian(model, [prompt], { sourceLayer: 0, targetLayer: 1, positions: 2, at });
    const v = randn(rng(78), d);
    const jv = Ja.apply(v);
    const h = 1e-4;
    const plus = refTarget(ref, prompt, 0, 1, 2, Array.from(at, (x, i) => x + h * v[i]));
    const minus = refTarget(ref, prompt, 0, 1, 2, Array.from(at, (x, i) => x - h * v[i]));
    expect(maxRelErr(jv, Array.from(plus, (x, i) => (x - minus[i]) / (2 * h)))).toBeLessThan(1e-4);
    expect(maxRelErr(jv, J0.apply(v))).toBeGreaterThan(1e-3);
  });
});
