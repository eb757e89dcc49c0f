// Block Lanczos on explicit matrices with a known spectrum (a near-tied pair, a slowly decaying tail,
// rank deficiency): top-n singular values and vectors against the dense SVD, the residual
// certificate recomputed independently, fewer products than block power iteration, the block and
// async operator paths, restarts, determinism and errors.
import { describe, expect, it } from "vitest";
import { dot, svd } from "../../src/linalg/dense.js";
import { blockLanczos, blockLanczosAsync, DEFAULT_RESIDUAL_TOL } from "../../src/solvers/block-lanczos.js";
import { blockPowerIteration } from "../../src/solvers/block-power.js";
import type { Progress, SolveResult } from "../../src/solvers/common.js";
import { explicitJ, normalOf, recordingBlockOperator, trueResidual } from "./helpers.js";

const n = 8;
// Well separated top, then a near-tied pair (relative gap 2e-8), then a tail decaying by 0.5% per
// index: the regime where power iteration crawls.
const SPECTRUM = [10, 9.2, 8.6, 8.6 * (1 - 2e-8), 8.1, 7.9, 7.8, 7.7, ...Array.from({ length: 132 }, (_, i) => 7.6 * 0.995 ** i)];
const J = explicitJ(220, 150, SPECTRUM, 1);
const A = normalOf(J);
const exact = svd(J.rows, J.dim);

/** Checks a result against the exact SVD; vectors individually where the gap allows, else as a subspace. */
function checkAgainstExact(res: SolveResult, sigmaTol: number): void {
  expect(res.vectors.length).toBe(n);
  for (let i = 0; i < n; i++) {
    expect(Math.abs(res.singularValues[i] - exact.values[i]) / exact.values[i], `sigma ${i}`).toBeLessThan(sigmaTol);
    const gap = Math.min(i > 0 ? exact.values[i - 1] - exact.values[i] : Infinity, exact.values[i] - exact.values[i + 1]) / exact.values[0];
    if (gap > 1e-3) {
      expect(Math.abs(dot(res.vectors[i], exact.right[i])), `|cos| vector ${i}`).toBeGreaterThan(0.9999);
    } else {
      // The near-tied pair: each vector must lie in the span of the two exact ones.
      const inPair = [2, 3].reduce((s, j) => s + dot(res.vectors[i], exact.right[j]) ** 2, 0);
      expect(Math.sqrt(inPair), `vector ${i} in the tied pair's span`).toBeGreaterThan(0.9999);
    }
    const v = res.vectors[i];
    const big = v.reduce((bi, x, k) => (Math.abs(x) > Math.abs(v[bi]) ? k : bi), 0);
    expect(v[big], "sign convention").toBeGreaterThan(0);
    expect(Math.abs(Math.hypot(...v) - 1)).toBeLessThan(1e-12);
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(Math.abs(dot(res.vectors[i], res.vectors[j]))).toBeLessThan(1e-10);
}

/** The reported residuals against ||A v - sigma^2 v|| recomputed with the explicit operator. */
function checkCertificate(res: SolveResult, tol: number): void {
  const top = res.singularValues[0] ** 2;
  for (let i = 0; i < n; i++) {
    const r = trueResidual(A, res.vectors[i], res.singularValues[i]);
    expect(Math.abs(r - res.residuals[i]), `residual ${i} honest`).toBeLessThan(1e-9 * top);
    expect(Math.abs(res.relativeResiduals[i] - res.residuals[i] / top)).toBeLessThan(1e-12);
    if (res.converged) expect(r / top, `residual ${i} within tol`).toBeLessThanOrEqual(tol * (1 + 1e-6) + 1e-12);
  }
}

describe("block Lanczos on an explicit J^T J", () => {
  it("the constructed spectrum is what the dense SVD sees", () => {
    for (let i = 0; i < 12; i++) expect(Math.abs(exact.values[i] - SPECTRUM[i]) / SPECTRUM[i]).toBeLessThan(1e-12);
  });

  it("finds the top 8 singular values to 1e-6 and the vectors (|cos| >= 0.9999 where the gap allows)", () => {
    const res = blockLanczos(A, { numVectors: n, tol: 1e-10, seed: 3 });
    expect(res.converged).toBe(true);
    checkAgainstExact(res, 1e-9);
    checkCertificate(res, 1e-10);
  });

  it("the default tolerance (residual <= 1e-3 sigma_1^2) gives sigmas to 1e-6 and an honest certificate", () => {
    const res = blockLanczos(A, { numVectors: n, tol: DEFAULT_RESIDUAL_TOL, seed: 4 });
    expect(res.converged).toBe(true);
    // sigma^2 error <= r^2 / gap for a Ritz value: sigmas come out far better than the residual.
    for (let i = 0; i < n; i++) expect(Math.abs(res.singularValues[i] - exact.values[i]) / exact.values[i]).toBeLessThan(1e-6);
    checkCertificate(res, DEFAULT_RESIDUAL_TOL);
  });

  for (const tol of [1e-3, 1e-6]) {
    it(`needs at least 3x fewer products than block power iteration to residual ${tol}`, () => {
      const power = blockPowerIteration(A, { numVectors: n, maxIters: 20000, tol: 0, residualTol: tol, seed: 5 });
      const lanczos = blockLanczos(A, { numVectors: n, tol, seed: 5 });
      expect(power.converged && lanczos.converged).toBe(true);
      checkCertificate(power, tol);
      checkCertificate(lanczos, tol);
      // Deterministic inputs: a count, not a timing.
      expect(power.products / lanczos.products, `power ${power.products} vs Lanczos ${lanczos.products} products`).toBeGreaterThanOrEqual(3);
    });
  }

  it("with a block operator: blocks of blockSize, products = vectors sent; the same result as per-vector", () => {
    for (const blockSize of [1, 3, 8, 12]) {
      const block = recordingBlockOperator(A);
      const a = blockLanczos(block, { numVectors: n, tol: 1e-6, seed: 6, blockSize });
      const b = blockLanczos(A, { numVectors: n, tol: 1e-6, seed: 6, blockSize });
      expect(a.converged).toBe(true);
      expect(block.blocks.reduce((s, x) => s + x, 0)).toBe(a.products);
      expect(a.iterations).toBe(block.blocks.length);
      // Every block has blockSize vectors (the last may be cut where the basis would exceed dim).
      expect(block.blocks.slice(0, -1).every((x) => x === blockSize)).toBe(true);
      expect(block.blocks.at(-1)!).toBeLessThanOrEqual(blockSize);
      expect(a.singularValues).toEqual(b.singularValues);
      expect(a.vectors).toEqual(b.vectors);
      checkAgainstExact(a, 1e-6);
    }
  });

  it("an asynchronous operator gives bitwise the same result as the synchronous one", async () => {
    const sync = blockLanczos(A, { numVectors: n, tol: 1e-8, seed: 7 });
    const async = await blockLanczosAsync(recordingBlockOperator(A, true), { numVectors: n, tol: 1e-8, seed: 7 });
    expect(async.singularValues).toEqual(sync.singularValues);
    expect(async.residuals).toEqual(sync.residuals);
    expect(async.vectors).toEqual(sync.vectors);
    expect(async.products).toBe(sync.products);
  });

  it("the synchronous driver refuses an operator that answers with a promise", () => {
    expect(() => blockLanczos(recordingBlockOperator(A, true), { numVectors: n, tol: 1e-8, seed: 7 })).toThrow(/asynchronously/);
  });

  it("thick restarts (a basis of only n + 2 * blockSize) still converge to the same answer", () => {
    const res = blockLanczos(A, { numVectors: n, tol: 1e-9, seed: 8, blockSize: 4, maxBasis: n + 8 });
    expect(res.converged).toBe(true);
    checkAgainstExact(res, 1e-8);
    checkCertificate(res, 1e-9);
  });

  it("is deterministic for a seed; another seed gives the same singular values", () => {
    const a = blockLanczos(A, { numVectors: n, tol: 1e-9, seed: 9 });
    const b = blockLanczos(A, { numVectors: n, tol: 1e-9, seed: 9 });
    const c = blockLanczos(A, { numVectors: n, tol: 1e-9, seed: 10 });
    expect(b.vectors).toEqual(a.vectors);
    expect(b.products).toBe(a.products);
    c.singularValues.forEach((s, i) => expect(Math.abs(s - a.singularValues[i]) / s).toBeLessThan(1e-9));
  });

  it("reports progress once per block application with growing product counts", () => {
    const seen: Progress[] = [];
    const res = blockLanczos(A, { numVectors: n, tol: 1e-6, seed: 11, onProgress: (p) => seen.push(p) });
    expect(seen.length).toBe(res.iterations);
    seen.forEach((p, i) => {
      expect(p.iteration).toBe(i + 1);
      expect(p.products).toBe((i + 1) * n);
      expect(p.sigmas.length).toBe(n);
      expect(p.relativeResiduals!.length).toBe(n);
    });
    expect(Math.max(...seen.at(-1)!.relativeResiduals!)).toBeLessThanOrEqual(1e-6);
  });

  it("exact initial guesses converge after one application", () => {
    const res = blockLanczos(A, { numVectors: n, tol: 1e-10, seed: 12, init: exact.right.slice(0, n) });
    expect(res.products).toBe(n);
    expect(res.converged).toBe(true);
    checkAgainstExact(res, 1e-12);
    // More guesses than the block size: the first block holds them all.
    const block = recordingBlockOperator(A);
    const small = blockLanczos(block, { numVectors: n, tol: 1e-10, seed: 12, blockSize: 2, init: exact.right.slice(0, n) });
    expect(block.blocks).toEqual([n]);
    checkAgainstExact(small, 1e-12);
  });

  it("stops unconverged at maxProducts, with honest residuals", () => {
    const res = blockLanczos(A, { numVectors: n, tol: 1e-12, seed: 13, maxProducts: 24 });
    expect(res.converged).toBe(false);
    expect(res.products).toBe(24);
    checkCertificate(res, 1);
  });

  it("rank-deficient J (rank 5 < 8 wanted): the zero singular values come out as zeros", () => {
    const low = explicitJ(40, 30, [5, 4, 3, 2, 1], 2);
    const res = blockLanczos(normalOf(low), { numVectors: n, tol: 1e-10, seed: 14 });
    expect(res.converged).toBe(true);
    [5, 4, 3, 2, 1].forEach((s, i) => expect(Math.abs(res.singularValues[i] - s) / s).toBeLessThan(1e-10));
    for (let i = 5; i < n; i++) expect(res.singularValues[i]).toBeLessThan(1e-6);
  });

  it("a dimension smaller than the basis: the whole space is spanned and the answer is exact", () => {
    const small = explicitJ(12, 10, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0.5], 3);
    const res = blockLanczos(normalOf(small), { numVectors: n, tol: 0, seed: 15 });
    expect(res.products).toBeLessThanOrEqual(10);
    [9, 8, 7, 6, 5, 4, 3, 2].forEach((s, i) => expect(Math.abs(res.singularValues[i] - s) / s).toBeLessThan(1e-12));
  });

  it("rejects a bad number of vectors or block size", () => {
    expect(() => blockLanczos(A, { numVectors: 0, tol: 1e-3, seed: 0 })).toThrow(/num-vectors/);
    expect(() => blockLanczos(A, { numVectors: 151, tol: 1e-3, seed: 0 })).toThrow(/num-vectors/);
    expect(() => blockLanczos(A, { numVectors: 4, tol: 1e-3, seed: 0, blockSize: 0 })).toThrow(/block size/);
  });
});
