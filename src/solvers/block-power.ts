// Block power iteration for the top eigenvectors of A = J^T J (the top right singular vectors of J),
// as in the seed: V <- orth(A V) until the subspace stops moving, then a Rayleigh-Ritz step.
// The Ritz values of A are sigma^2; the residual of a Ritz pair is ||A x - sigma^2 x||.
import { canonicalSign, gaussianStream, norm, orthonormalize, symmetricEigen, dot, type Vec } from "../linalg/dense.js";

export interface NormalOperator {
  /** Length of the vectors. */
  readonly dim: number;
  /** A v = J^T J v. */
  apply(v: Float64Array): Float64Array;
}

export interface Progress {
  iteration: number;
  sigmas: number[];
  residuals: number[];
  subspaceChange: number;
}

export interface SolveOptions {
  numVectors: number;
  maxIters: number;
  /** Stop when the sine of the largest angle between successive subspaces is below tol. */
  tol: number;
  seed: number;
  /** Initial guesses for the first vectors (the rest are random). */
  init?: Float64Array[];
  onProgress?: (p: Progress) => void;
}

export interface SolveResult {
  vectors: Float64Array[];
  singularValues: number[];
  /** ||J^T J v - sigma^2 v|| per vector: the convergence certificate. */
  residuals: number[];
  iterations: number;
  /** Number of A v products (one per vector per application). */
  products: number;
  converged: boolean;
}

function randomBlock(dim: number, n: number, seed: number, init?: Float64Array[]): Vec[] {
  const g = gaussianStream(seed);
  const V: Vec[] = [];
  for (let i = 0; i < n; i++) {
    const v = new Float64Array(dim);
    for (let k = 0; k < dim; k++) v[k] = g();
    V.push(v);
  }
  init?.forEach((x, i) => {
    if (i < n) V[i] = Float64Array.from(x);
  });
  const refill = gaussianStream(seed + 1);
  return orthonormalize(V, () => Float64Array.from({ length: dim }, () => refill()));
}

/** Rayleigh-Ritz on span(V) given W = A V: rotated vectors, values (desc) and residuals. */
export function rayleighRitz(V: Vec[], W: Vec[]): { X: Vec[]; AX: Vec[]; values: number[]; residuals: number[] } {
  const n = V.length;
  const H = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => 0.5 * (dot(V[i], W[j]) + dot(V[j], W[i]))));
  const { values, vectors: Q } = symmetricEigen(H);
  const dim = V[0].length;
  const X: Vec[] = [], AX: Vec[] = [], residuals: number[] = [];
  for (let c = 0; c < n; c++) {
    const x = new Float64Array(dim), ax = new Float64Array(dim);
    for (let i = 0; i < n; i++) {
      const q = Q[i][c];
      for (let k = 0; k < dim; k++) {
        x[k] += q * V[i][k];
        ax[k] += q * W[i][k];
      }
    }
    const r = new Float64Array(dim);
    for (let k = 0; k < dim; k++) r[k] = ax[k] - values[c] * x[k];
    X.push(x);
    AX.push(ax);
    residuals.push(norm(r));
  }
  return { X, AX, values, residuals };
}

/**
 * sin of the largest principal angle between span(U) and span(V) (both orthonormal), as the largest
 * ||(I - U U^T) v||: computing the residual vector directly stays accurate far below 1e-8, where
 * sqrt(1 - ||U^T v||^2) would lose everything to cancellation.
 */
export function subspaceDistance(U: Vec[], V: Vec[]): number {
  let worst = 0;
  for (const v of V) {
    const r = Float64Array.from(v);
    for (const u of U) {
      const c = dot(u, r);
      for (let k = 0; k < r.length; k++) r[k] -= c * u[k];
    }
    worst = Math.max(worst, norm(r));
  }
  return worst;
}

export function finishVectors(X: Vec[], values: number[], residuals: number[]): { vectors: Vec[]; singularValues: number[]; residuals: number[] } {
  X.forEach((x) => canonicalSign(x));
  return { vectors: X, singularValues: values.map((l) => Math.sqrt(Math.max(l, 0))), residuals };
}

export function blockPowerIteration(A: NormalOperator, opts: SolveOptions): SolveResult {
  const n = opts.numVectors;
  if (n < 1 || n > A.dim) throw new Error(`--num-vectors ${n} must be between 1 and the hidden size ${A.dim}`);
  let V = randomBlock(A.dim, n, opts.seed, opts.init);
  let products = 0;
  let iterations = 0;
  let converged = false;
  const applyBlock = (B: Vec[]) => B.map((v) => (products++, A.apply(v)));
  for (let it = 1; it <= opts.maxIters; it++) {
    const W = applyBlock(V);
    iterations = it;
    // Ritz values and residuals of the current block come for free from W; they are what we report.
    const rr = rayleighRitz(V, W);
    const next = orthonormalize(rr.AX.map((x) => Float64Array.from(x)));
    const change = subspaceDistance(V, next);
    opts.onProgress?.({ iteration: it, sigmas: rr.values.map((l) => Math.sqrt(Math.max(l, 0))), residuals: rr.residuals, subspaceChange: change });
    V = next;
    if (change < opts.tol) {
      converged = true;
      break;
    }
  }
  // Final Rayleigh-Ritz on the last block.
  const W = applyBlock(V);
  const rr = rayleighRitz(V, W);
  const done = finishVectors(rr.X, rr.values, rr.residuals);
  return { ...done, iterations, products, converged };
}
