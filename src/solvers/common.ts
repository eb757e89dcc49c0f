// What the eigensolvers for A = J^T J share: the operator interfaces, the result shape, the random
// start, Rayleigh-Ritz, the convergence certificate, and the drivers that run one solver body either
// synchronously (a plain function operator) or asynchronously (a batched engine that may run on
// worker threads).
//
// A solver body is a generator: it yields a block of vectors it wants A applied to and receives
// A times that block back. The same body therefore serves both drivers, and the count of products
// (one per vector per application) is kept in one place.
import { canonicalSign, dot, gaussianStream, orthonormalize, symmetricEigen, type Vec } from "../linalg/dense.js";

/** A = J^T J applied to one vector at a time. */
export interface NormalOperator {
  /** Length of the vectors. */
  readonly dim: number;
  /** A v = J^T J v. */
  apply(v: Float64Array): Float64Array;
}

/**
 * A = J^T J applied to a block of vectors at once (a batched engine turns the block into
 * matrix-matrix work). May answer asynchronously. Must not keep or modify the input arrays.
 */
export interface BlockOperator {
  readonly dim: number;
  applyBlock(V: readonly Float64Array[]): Float64Array[] | Promise<Float64Array[]>;
}

export interface Progress {
  /** Block applications so far. */
  iteration: number;
  sigmas: number[];
  /** Absolute residuals ||A x - theta x|| of the current Ritz pairs. */
  residuals: number[];
  /** Sine of the largest angle between the current and the previous approximate subspace. */
  subspaceChange: number;
  /** Products so far (one per vector per application). */
  products?: number;
  /** residuals / theta_1 (see relativeResiduals in SolveResult). */
  relativeResiduals?: number[];
}

export interface SolveResult {
  vectors: Float64Array[];
  singularValues: number[];
  /** ||J^T J v - sigma^2 v|| per vector: the convergence certificate (absolute). */
  residuals: number[];
  /**
   * The same residuals divided by sigma_1^2 (the largest Ritz value). For symmetric A a residual r
   * means an eigenvalue of A lies within r of sigma^2 (so sigma^2 is right to relativeResidual *
   * sigma_1^2), and the vector is within angle ~ r / gap of an eigenvector (Davis-Kahan).
   */
  relativeResiduals: number[];
  /** Block applications of A. */
  iterations: number;
  /** Number of A v products (one per vector per application). */
  products: number;
  converged: boolean;
}

/** A solver body: yields blocks to multiply by A, receives A times each block, returns the result. */
export type SolverBody = Generator<Vec[], SolveResult, Vec[]>;

/** A per-vector operator as a block operator (one product per vector, in order). */
export function blockOperatorOf(op: NormalOperator): BlockOperator & { apply(v: Float64Array): Float64Array } {
  return { dim: op.dim, apply: (v) => op.apply(v), applyBlock: (V) => V.map((v) => op.apply(v)) };
}

function checkBlock(V: Vec[], W: Vec[], dim: number): void {
  if (!Array.isArray(W) || W.length !== V.length) throw new Error(`operator returned ${Array.isArray(W) ? W.length : typeof W} vectors for a block of ${V.length}`);
  for (const w of W) if (w.length !== dim) throw new Error(`operator returned a vector of length ${w.length}, expected ${dim}`);
}

/** Run a solver body with an operator that answers synchronously. */
export function runSync(body: SolverBody, op: NormalOperator | BlockOperator): SolveResult {
  const apply = "applyBlock" in op ? (V: Vec[]) => op.applyBlock(V) : (V: Vec[]) => V.map((v) => op.apply(v));
  let step = body.next();
  while (!step.done) {
    const W = apply(step.value);
    if (W instanceof Promise) throw new Error("the operator answered asynchronously: use the async solver");
    checkBlock(step.value, W, op.dim);
    step = body.next(W);
  }
  return step.value;
}

/** Run a solver body with an operator that may answer asynchronously. */
export async function runAsync(body: SolverBody, op: NormalOperator | BlockOperator): Promise<SolveResult> {
  const apply = "applyBlock" in op ? (V: Vec[]) => op.applyBlock(V) : (V: Vec[]) => V.map((v) => op.apply(v));
  let step = body.next();
  while (!step.done) {
    const W = await apply(step.value);
    checkBlock(step.value, W, op.dim);
    step = body.next(W);
  }
  return step.value;
}

/** n orthonormal starting vectors: `init` first (as given), the rest Gaussian from `seed`. */
export function randomBlock(dim: number, n: number, seed: number, init?: readonly Float64Array[]): Vec[] {
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

/** Rayleigh-Ritz on span(V) (orthonormal) given W = A V: rotated vectors, values (desc) and residuals. */
export function rayleighRitz(V: Vec[], W: Vec[]): { X: Vec[]; AX: Vec[]; values: number[]; residuals: number[] } {
  const n = V.length;
  // Symmetrised: A is symmetric but its products carry float32 rounding.
  const H = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => 0.5 * (dot(V[i], W[j]) + dot(V[j], W[i]))));
  // Cyclic Jacobi: n is the block size (a few dozen at most), where it is fast and most accurate.
  const { values, vectors: Q } = symmetricEigen(H);
  const { X, AX, residuals } = ritzPairs(V, W, values, Q, n);
  return { X, AX, values, residuals };
}

/**
 * Ritz vectors X = V S, AX = W S (S = columns 0..count-1 of `S`) and the residuals ||AX - theta X||,
 * computed from the stored products W = A V rather than from a recurrence: the certificate is as
 * honest as the products themselves.
 */
export function ritzPairs(V: Vec[], W: Vec[], values: number[], S: number[][], count: number): { X: Vec[]; AX: Vec[]; residuals: number[] } {
  const m = V.length;
  const dim = V[0].length;
  const X: Vec[] = [], AX: Vec[] = [], residuals: number[] = [];
  for (let c = 0; c < count; c++) {
    const x = new Float64Array(dim), ax = new Float64Array(dim);
    for (let i = 0; i < m; i++) {
      const q = S[i][c];
      if (q === 0) continue;
      const vi = V[i], wi = W[i];
      for (let k = 0; k < dim; k++) {
        x[k] += q * vi[k];
        ax[k] += q * wi[k];
      }
    }
    let r2 = 0;
    for (let k = 0; k < dim; k++) {
      const r = ax[k] - values[c] * x[k];
      r2 += r * r;
    }
    X.push(x);
    AX.push(ax);
    residuals.push(Math.sqrt(r2));
  }
  return { X, AX, residuals };
}

/** Residuals relative to sigma_1^2 = the largest Ritz value (a lower bound of it, so conservative). */
export function relativeToTop(residuals: number[], values: number[]): number[] {
  const top = Math.max(values[0] ?? 0, Number.MIN_VALUE);
  return residuals.map((r) => r / top);
}

/** sin of the largest principal angle between span(U) and span(V) (both orthonormal). */
export function subspaceDistance(U: Vec[], V: Vec[]): number {
  let worst = 0;
  for (const v of V) {
    let proj = 0;
    for (const u of U) {
      const c = dot(u, v);
      proj += c * c;
    }
    worst = Math.max(worst, Math.sqrt(Math.max(0, 1 - proj)));
  }
  return worst;
}

export function finishVectors(X: Vec[], values: number[], residuals: number[]): { vectors: Vec[]; singularValues: number[]; residuals: number[] } {
  X.forEach((x) => canonicalSign(x));
  return { vectors: X, singularValues: values.map((l) => Math.sqrt(Math.max(l, 0))), residuals };
}
