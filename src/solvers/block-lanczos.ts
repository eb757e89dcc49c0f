// Block Lanczos with full reorthogonalisation and thick restarts, for the top eigenpairs of
// A = J^T J (the top right singular vectors of J and sigma^2).
//
// Why this algorithm. Block power iteration keeps only the last block A^k V0; every Krylov method
// keeps the whole block Krylov space span{V0, A V0, ..., A^k V0} and picks the best approximation in
// it, whose error after k applications falls like a Chebyshev polynomial in the gap (about
// exp(-2k sqrt(gap))) instead of (lambda_{n+1}/lambda_i)^k: for the slowly decaying spectra of
// steering Jacobians that is many times fewer products. Golub-Kahan bidiagonalisation of J builds
// the same right Krylov space from the same start, with the same number of J and J^T applications
// per vector, so it converges identically per product; it only pays off for singular values near
// the noise floor, which we do not want. Lanczos on A needs nothing but J^T J V, which every engine
// provides for a block at once (matrix-matrix work). Randomised block Krylov (Musco & Musco) is
// the same space again, without restarts.
//
// How. The basis Q (orthonormal, at most maxBasis vectors) and the products AQ = A Q are stored;
// d <= ~5000 and a few hundred vectors make that a few megabytes, and storing AQ gives three things
// for free: the projected matrix H = Q^T A Q is formed explicitly (symmetrised) rather than from
// the three-term recurrence, so the float32 rounding of the products, which makes A slightly
// non-symmetric, cannot derail it; every Ritz residual ||A x - theta x|| is computed from
// A x = AQ s directly, so the certificate is honest without extra products; and a restart keeps
// the best Ritz vectors with their products (thick restart, Wu & Simon 2000) at no cost. Each new
// block is A times the previous block, orthogonalised twice against the whole basis.
//
// Convergence certificate: stop when every one of the n wanted Ritz pairs has
// ||A x - theta x|| / theta_1 <= tol, theta_1 the largest Ritz value (<= sigma_1^2). For symmetric
// A this puts an eigenvalue within tol * sigma_1^2 of each theta, and each x within an angle of
// about tol * sigma_1^2 / gap of an eigenvector. (Like any Krylov or power method it cannot prove
// that no larger eigenvalue was missed; with a random start that has probability zero, and block
// size >= the multiplicity of any repeated eigenvalue is needed to find all its copies.)
import { dot, gaussianStream, type Vec } from "../linalg/dense.js";
import {
  finishVectors,
  randomBlock,
  relativeToTop,
  ritzPairs,
  runAsync,
  runSync,
  subspaceDistance,
  type BlockOperator,
  type NormalOperator,
  type Progress,
  type SolveResult,
  type SolverBody,
} from "./common.js";
import { symmetricEigenTridiagonal } from "./symmetric-eigen.js";

/** The default convergence threshold of the Krylov solver (relative residual, see above). */
export const DEFAULT_RESIDUAL_TOL = 1e-3;

export interface KrylovOptions {
  numVectors: number;
  /** Stop when every wanted Ritz pair has ||A x - theta x|| / theta_1 <= tol. */
  tol: number;
  seed: number;
  /** Initial guesses for the first vectors (the rest of the first block is random). */
  init?: Float64Array[];
  onProgress?: (p: Progress) => void;
  /** Vectors per application of A (default numVectors: batched engines like wide blocks). */
  blockSize?: number;
  /** Largest basis before a thick restart (default max(numVectors + 3 * blockSize, 24 * blockSize), at most dim). */
  maxBasis?: number;
  /** Give up (converged = false) after this many products (default 1000 * numVectors). */
  maxProducts?: number;
  /** Give up after this many block applications (default unlimited). */
  maxIters?: number;
}

interface Resolved {
  n: number;
  b: number;
  maxBasis: number;
  keep: number;
  maxProducts: number;
  maxIters: number;
}

function resolve(dim: number, o: KrylovOptions): Resolved {
  const n = o.numVectors;
  if (!Number.isInteger(n) || n < 1 || n > dim) throw new Error(`--num-vectors ${n} must be between 1 and the hidden size ${dim}`);
  const b = o.blockSize ?? n;
  if (!Number.isInteger(b) || b < 1) throw new Error(`block size ${b} must be a positive integer`);
  if (!(o.tol >= 0)) throw new Error(`tolerance ${o.tol} must be >= 0`);
  const maxBasis = Math.min(dim, o.maxBasis ?? Math.max(n + 3 * b, 24 * b));
  if (maxBasis < Math.min(dim, n + 2 * b)) throw new Error(`maxBasis ${maxBasis} must be at least numVectors + 2 * blockSize = ${n + 2 * b}`);
  // Keep the wanted pairs plus as many more as leave room for a few blocks: the extra Ritz vectors
  // carry the next eigenvalues' directions, which is what keeps the gap after a restart.
  const keep = Math.max(n, Math.min(maxBasis - 2 * b, n + Math.floor((maxBasis - n) / 2)));
  return {
    n,
    b,
    maxBasis,
    keep,
    maxProducts: o.maxProducts ?? 1000 * n,
    maxIters: o.maxIters ?? Number.POSITIVE_INFINITY,
  };
}

/**
 * Orthonormalise the columns of W against Q and each other (classical Gram-Schmidt against Q
 * twice, then modified within the block twice). A column that is numerically inside span(Q) --
 * an invariant subspace was found -- is replaced by a fresh random direction, so the basis keeps
 * growing; `count` columns are returned (the basis may not exceed dim).
 */
function nextBlock(Q: Vec[], W: Vec[], count: number, random: () => number): Vec[] {
  const out: Vec[] = [];
  const dim = Q.length ? Q[0].length : W[0].length;
  for (let j = 0; j < W.length && out.length < count; j++) {
    let v = Float64Array.from(W[j]);
    for (let attempt = 0; ; attempt++) {
      const before = Math.sqrt(dot(v, v));
      for (let pass = 0; pass < 2; pass++) {
        for (const q of Q) subtract(v, q, dot(q, v));
        for (const q of out) subtract(v, q, dot(q, v));
      }
      const after = Math.sqrt(dot(v, v));
      if (after > 1e-10 * before && after > 0) {
        for (let k = 0; k < dim; k++) v[k] /= after;
        out.push(v);
        break;
      }
      if (attempt > 3) throw new Error("block Lanczos: cannot extend the basis (operator returned non-finite values?)");
      v = Float64Array.from({ length: dim }, () => random());
    }
  }
  // W may have fewer columns than wanted (the first block was short): fill with random directions.
  while (out.length < count) {
    const v = Float64Array.from({ length: dim }, () => random());
    const extended = nextBlock([...Q, ...out], [v], 1, random);
    out.push(extended[0]);
  }
  return out;
}

function subtract(v: Vec, q: Vec, c: number): void {
  for (let k = 0; k < v.length; k++) v[k] -= c * q[k];
}

function* blockLanczosBody(dim: number, opts: KrylovOptions): SolverBody {
  const { n, b, maxBasis, keep, maxProducts, maxIters } = resolve(dim, opts);
  const refill = gaussianStream(opts.seed + 7919);
  const random = () => refill();
  // The first block holds all the initial guesses (even beyond the block size) and the seed's
  // random vectors: with blockSize = numVectors it is block power iteration's starting block.
  const first = Math.min(dim, Math.max(b, Math.min(opts.init?.length ?? 0, n)));
  let block = randomBlock(dim, first, opts.seed, opts.init);

  const Q: Vec[] = [];
  const AQ: Vec[] = [];
  // H = Q^T A Q (symmetrised), grown by a block each step, reset to diag(theta) at a restart.
  let H: number[][] = [];
  let products = 0;
  let iterations = 0;
  let previous: Vec[] | null = null;
  for (;;) {
    const W = yield block;
    products += block.length;
    iterations++;
    const m0 = Q.length;
    Q.push(...block);
    AQ.push(...W);
    const m = Q.length;
    const grown: number[][] = Array.from({ length: m }, (_, i) => new Array<number>(m).fill(0));
    for (let i = 0; i < m0; i++) for (let j = 0; j < m0; j++) grown[i][j] = H[i][j];
    for (let j = m0; j < m; j++) {
      for (let i = 0; i <= j; i++) {
        const h = 0.5 * (dot(Q[i], AQ[j]) + dot(Q[j], AQ[i]));
        grown[i][j] = h;
        grown[j][i] = h;
      }
    }
    H = grown;

    const { values, vectors: S } = symmetricEigenTridiagonal(H);
    const wanted = Math.min(n, m);
    const pairs = ritzPairs(Q, AQ, values, S, wanted);
    const relative = relativeToTop(pairs.residuals, values);
    const change = previous ? subspaceDistance(previous, pairs.X) : 1;
    previous = pairs.X;
    opts.onProgress?.({
      iteration: iterations,
      sigmas: values.slice(0, wanted).map((l) => Math.sqrt(Math.max(l, 0))),
      residuals: pairs.residuals,
      subspaceChange: change,
      products,
      relativeResiduals: relative,
    });

    const converged = m >= n && Math.max(...relative) <= opts.tol;
    const exhausted = m >= dim; // the basis spans everything: the Ritz pairs are as good as they get
    const room = Math.min(b, dim - m);
    if (converged || exhausted || products + room > maxProducts || iterations >= maxIters) {
      const done = finishVectors(pairs.X, values.slice(0, wanted), pairs.residuals);
      return { ...done, relativeResiduals: relative, iterations, products, converged };
    }

    // Next block: A times the newest block, orthogonalised against the whole basis.
    let next = nextBlock(Q, W, room, random);
    if (m + next.length > maxBasis) {
      // Thick restart: keep the best `keep` Ritz vectors and their products (no new products).
      const kept = ritzPairs(Q, AQ, values, S, Math.min(keep, m));
      Q.length = 0;
      AQ.length = 0;
      Q.push(...kept.X);
      AQ.push(...kept.AX);
      H = kept.X.map((_, i) => kept.X.map((__, j) => (i === j ? values[i] : 0)));
      // `next` is orthogonal to the old basis, hence to the kept vectors; re-orthogonalise anyway
      // against the rounding of the rotation.
      next = nextBlock(Q, next, Math.min(room, maxBasis - Q.length), random);
    }
    block = next;
  }
}

/** Block Lanczos with an operator that answers synchronously. */
export function blockLanczos(A: NormalOperator | BlockOperator, opts: KrylovOptions): SolveResult {
  return runSync(blockLanczosBody(A.dim, opts), A);
}

/** Block Lanczos with an operator that may answer asynchronously (e.g. a worker pool). */
export function blockLanczosAsync(A: NormalOperator | BlockOperator, opts: KrylovOptions): Promise<SolveResult> {
  return runAsync(blockLanczosBody(A.dim, opts), A);
}
