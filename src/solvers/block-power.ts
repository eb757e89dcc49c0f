// Block power iteration for the top eigenvectors of A = J^T J (the top right singular vectors of J),
// as in the seed: V <- orth(A V) until the subspace stops moving, then a Rayleigh-Ritz step.
// The Ritz values of A are sigma^2; the residual of a Ritz pair is ||A x - sigma^2 x||.
//
// Kept as the seed's algorithm (and the baseline the Krylov solver in block-lanczos.ts is measured
// against). `blockPowerIteration` runs with a per-vector or a synchronous block operator;
// `blockPowerIterationAsync` with an operator that may answer asynchronously (a threaded engine).
import { orthonormalize } from "../linalg/dense.js";
import {
  finishVectors,
  randomBlock,
  rayleighRitz,
  relativeToTop,
  runAsync,
  runSync,
  subspaceDistance,
  type BlockOperator,
  type NormalOperator,
  type Progress,
  type SolveResult,
  type SolverBody,
} from "./common.js";

export { finishVectors, rayleighRitz, subspaceDistance };
export type { BlockOperator, NormalOperator, Progress, SolveResult };

export interface SolveOptions {
  numVectors: number;
  maxIters: number;
  /** Stop when the sine of the largest angle between successive subspaces is below tol. */
  tol: number;
  /**
   * Also stop, without the final extra application, as soon as every Ritz pair of the current block
   * has ||A x - theta x|| / theta_1 <= residualTol (the certificate the Krylov solver uses).
   */
  residualTol?: number;
  seed: number;
  /** Initial guesses for the first vectors (the rest are random). */
  init?: Float64Array[];
  onProgress?: (p: Progress) => void;
}

function* blockPowerBody(dim: number, opts: SolveOptions): SolverBody {
  const n = opts.numVectors;
  if (!Number.isInteger(n) || n < 1 || n > dim) throw new Error(`--num-vectors ${n} must be between 1 and the hidden size ${dim}`);
  let V = randomBlock(dim, n, opts.seed, opts.init);
  let products = 0;
  let iterations = 0;
  let converged = false;
  for (let it = 1; it <= opts.maxIters; it++) {
    const W = yield V;
    products += V.length;
    iterations = it;
    // Ritz values and residuals of the current block come for free from W; they are what we report.
    const rr = rayleighRitz(V, W);
    const relative = relativeToTop(rr.residuals, rr.values);
    const next = orthonormalize(rr.AX.map((x) => Float64Array.from(x)));
    const change = subspaceDistance(V, next);
    opts.onProgress?.({
      iteration: it,
      sigmas: rr.values.map((l) => Math.sqrt(Math.max(l, 0))),
      residuals: rr.residuals,
      subspaceChange: change,
      products,
      relativeResiduals: relative,
    });
    if (opts.residualTol !== undefined && Math.max(...relative) <= opts.residualTol) {
      // The Ritz pairs of this block are certified already: no final application needed.
      const done = finishVectors(rr.X, rr.values, rr.residuals);
      return { ...done, relativeResiduals: relative, iterations, products, converged: true };
    }
    V = next;
    if (change < opts.tol) {
      converged = true;
      break;
    }
  }
  // Final Rayleigh-Ritz on the last block.
  const W = yield V;
  products += V.length;
  const rr = rayleighRitz(V, W);
  const done = finishVectors(rr.X, rr.values, rr.residuals);
  return { ...done, relativeResiduals: relativeToTop(rr.residuals, rr.values), iterations, products, converged };
}

/** Block power iteration with an operator that answers synchronously. */
export function blockPowerIteration(A: NormalOperator | BlockOperator, opts: SolveOptions): SolveResult {
  return runSync(blockPowerBody(A.dim, opts), A);
}

/** Block power iteration with an operator that may answer asynchronously (e.g. a worker pool). */
export function blockPowerIterationAsync(A: NormalOperator | BlockOperator, opts: SolveOptions): Promise<SolveResult> {
  return runAsync(blockPowerBody(A.dim, opts), A);
}
