// Block power iteration with per-vector, block and asynchronous operators; the seed's fixed-iteration
// schedule (max-iters applications plus the final Rayleigh-Ritz one); the residual stop.
import { describe, expect, it } from "vitest";
import { dot, svd } from "../../src/linalg/dense.js";
import { blockPowerIteration, blockPowerIterationAsync } from "../../src/solvers/block-power.js";
import type { Progress } from "../../src/solvers/common.js";
import { explicitJ, normalOf, recordingBlockOperator, trueResidual } from "./helpers.js";

const J = explicitJ(60, 40, Array.from({ length: 40 }, (_, i) => 10 * 0.8 ** i), 21);
const A = normalOf(J);
const exact = svd(J.rows, J.dim);

describe("block power iteration", () => {
  it("the seed's schedule: maxIters applications and one more for Rayleigh-Ritz, n products each", () => {
    const block = recordingBlockOperator(A);
    const res = blockPowerIteration(block, { numVectors: 4, maxIters: 3, tol: 0, seed: 1 });
    expect(block.blocks).toEqual([4, 4, 4, 4]);
    expect(res.products).toBe(16);
    expect(res.iterations).toBe(3);
    expect(res.converged).toBe(false);
    // The reported residuals are those of the returned vectors.
    res.vectors.forEach((v, i) => expect(Math.abs(trueResidual(A, v, res.singularValues[i]) - res.residuals[i])).toBeLessThan(1e-10));
  });

  it("per-vector, block and asynchronous operators give bitwise the same result", async () => {
    const opts = { numVectors: 4, maxIters: 200, tol: 1e-9, seed: 2 };
    const a = blockPowerIteration(A, opts);
    const b = blockPowerIteration(recordingBlockOperator(A), opts);
    const c = await blockPowerIterationAsync(recordingBlockOperator(A, true), opts);
    expect(a.converged).toBe(true);
    for (const r of [b, c]) {
      expect(r.vectors).toEqual(a.vectors);
      expect(r.singularValues).toEqual(a.singularValues);
      expect(r.products).toBe(a.products);
    }
    a.singularValues.forEach((s, i) => expect(Math.abs(s - exact.values[i]) / exact.values[i]).toBeLessThan(1e-9));
    a.vectors.forEach((v, i) => expect(Math.abs(dot(v, exact.right[i]))).toBeGreaterThan(0.9999));
  });

  it("residualTol stops as soon as every Ritz pair is certified, without the extra application", () => {
    const seen: Progress[] = [];
    const res = blockPowerIteration(A, { numVectors: 4, maxIters: 1000, tol: 0, residualTol: 1e-4, seed: 3, onProgress: (p) => seen.push(p) });
    expect(res.converged).toBe(true);
    expect(res.products).toBe(4 * res.iterations);
    expect(Math.max(...seen.at(-1)!.relativeResiduals!)).toBeLessThanOrEqual(1e-4);
    expect(Math.max(...seen.at(-2)!.relativeResiduals!)).toBeGreaterThan(1e-4);
    const top = res.singularValues[0] ** 2;
    res.vectors.forEach((v, i) => expect(trueResidual(A, v, res.singularValues[i]) / top).toBeLessThanOrEqual(1e-4 * (1 + 1e-9)));
  });
});
