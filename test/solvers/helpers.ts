// Explicit test operators for the solvers: J = U diag(s) V^T with a chosen spectrum and random
// orthonormal U, V, applied in float64 row by row, so the exact answer is known by construction
// (and checked again with the dense SVD).
import { dot, orthonormalize } from "../../src/linalg/dense.js";
import type { BlockOperator, NormalOperator } from "../../src/solvers/common.js";
import { rng } from "../helpers/random.js";

export interface ExplicitJ {
  rows: Float64Array[];
  /** Right singular vectors by construction (V's columns), matching `sigmas`. */
  right: Float64Array[];
  sigmas: number[];
  dim: number;
}

function randomOrthonormal(dim: number, count: number, seed: number): Float64Array[] {
  const r = rng(seed);
  const cols = Array.from({ length: count }, () => Float64Array.from({ length: dim }, () => {
    const u = Math.max(r(), 1e-12), v = r();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }));
  return orthonormalize(cols);
}

/** An m x dim matrix with singular values `sigmas` (length <= min(m, dim)). */
export function explicitJ(m: number, dim: number, sigmas: number[], seed: number): ExplicitJ {
  const U = randomOrthonormal(m, sigmas.length, seed);
  const V = randomOrthonormal(dim, sigmas.length, seed + 1000);
  const rows = Array.from({ length: m }, (_, i) => {
    const row = new Float64Array(dim);
    sigmas.forEach((s, c) => {
      const a = U[c][i] * s;
      for (let k = 0; k < dim; k++) row[k] += a * V[c][k];
    });
    return row;
  });
  return { rows, right: V, sigmas, dim };
}

/** v -> J^T (J v), in float64, independent of the solvers' code. */
export function normalOf(J: { rows: Float64Array[]; dim: number }): NormalOperator {
  return {
    dim: J.dim,
    apply(v) {
      const out = new Float64Array(J.dim);
      for (const row of J.rows) {
        const c = dot(row, v);
        for (let k = 0; k < J.dim; k++) out[k] += c * row[k];
      }
      return out;
    },
  };
}

/** The same operator as a block operator that records the block sizes it was given. */
export function recordingBlockOperator(op: NormalOperator, asyncAnswer = false): BlockOperator & { blocks: number[] } {
  const blocks: number[] = [];
  return {
    dim: op.dim,
    blocks,
    applyBlock(V) {
      blocks.push(V.length);
      const W = V.map((v) => op.apply(v));
      return asyncAnswer ? new Promise((resolve) => setTimeout(() => resolve(W), 0)) : W;
    },
  };
}

/** ||A v - s^2 v|| recomputed with the explicit operator. */
export function trueResidual(op: NormalOperator, v: Float64Array, sigma: number): number {
  const av = op.apply(v);
  let r2 = 0;
  for (let k = 0; k < v.length; k++) r2 += (av[k] - sigma * sigma * v[k]) ** 2;
  return Math.sqrt(r2);
}
