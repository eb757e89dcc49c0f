// The layer-pair atlas: for every (S, T) with S < T in the given ranges, the top-k singular vectors and
// values of the steering Jacobian and the both-sign KL of each vector. The research line found that
// the hand-picked pair is the best for none of its evals and that sweeping pairs finds better vectors.
//
// What is shared across pairs (the rest is per pair):
//   - the forward at sv0: one SteeringEngine over the span (min S, max T) runs layers 0..min S once and
//     S+1..max T once at sv0 and keeps what the derivatives read; each pair is a view of it
//     (SteeringEngine.restrict): its products run layers S+1..T of that saved forward, bitwise as an
//     engine built for the pair alone would;
//   - the weights: read once for the whole atlas (resident) or streamed per pass;
//   - the unsteered pass of the KL prompts: once through all layers, the state after each source layer
//     kept (KlEvaluator), so a pair's KL runs only its steered sequences through S+1..L-1;
//   - the JVPs of a source, when it has many targets (solver "jacobian", or "auto" when it is
//     cheaper): d JVPs from S give every target's whole Jacobian at once (full-jacobian.ts).
// Block Lanczos products (solver "lanczos") are not shared: each pair's solver asks for its own blocks.
import { blockLanczosAsync } from "../solvers/block-lanczos.js";
import type { Progress, SolveResult } from "../solvers/common.js";
import { autoBlockSize, type SteeringEngine } from "../engine/steering-engine.js";
import { klBothSigns, type KlEvaluator, type KlScales, type KlVectorSummary } from "../steering-eval/kl.js";

export interface AtlasPair {
  source: number;
  target: number;
}

export interface AtlasSolverOptions {
  numVectors: number;
  tol: number;
  seed: number;
  maxIters?: number;
}

/** One pair's result: what the pair file holds besides the vectors. */
export interface AtlasPairResult extends AtlasPair {
  singular_values: number[];
  relative_residuals: number[];
  converged: boolean;
  products: number;
  /** per vector, at the first magnitude: KL at +, at -, max */
  kl: KlVectorSummary[];
  /** largest max_kl over the vectors (first magnitude), and which vector */
  max_kl: number;
  best_vector: number;
  /** KL of vector 0 (the top singular vector) at its better sign */
  top_vector_kl: number;
  /** how the vectors were found: block Lanczos on the pair, or the source's whole Jacobian */
  solver: "lanczos" | "jacobian";
  /** solve: the pair's own work (for "jacobian", sweep is its share of the source's JVPs, included in solve) */
  seconds: { solve: number; kl: number; sweep?: number };
}

/** Every (S, T) with S in sources, T in targets and S < T, S-major. */
export function atlasPairs(sources: readonly number[], targets: readonly number[]): AtlasPair[] {
  const out: AtlasPair[] = [];
  for (const s of sources) for (const t of targets) if (s < t) out.push({ source: s, target: t });
  return out;
}

/** Block Lanczos on one pair's view of the span engine, with power-iter's block size for these prompts. */
export function lanczosPair(span: SteeringEngine, pair: AtlasPair, solver: AtlasSolverOptions, onProgress?: (p: Progress) => void): Promise<SolveResult> {
  const view = span.restrict(pair.source, pair.target);
  const blockSize = autoBlockSize(solver.numVectors, view.prompts);
  return blockLanczosAsync({ dim: view.inputDim, applyBlock: (V) => view.normalProducts(V) }, { numVectors: solver.numVectors, tol: solver.tol, seed: solver.seed, maxIters: solver.maxIters, blockSize, onProgress });
}

/** Score a solved pair: its vectors' KL at both signs, and the result its file and atlas.json hold. */
export async function scoreAtlasPair(ev: KlEvaluator, pair: AtlasPair, solve: SolveResult, solver: AtlasPairResult["solver"], scales: KlScales, solveSeconds: number, sweepSeconds?: number): Promise<AtlasPairResult> {
  const t1 = performance.now();
  const { summary } = await klBothSigns(ev, pair.source, solve.vectors, scales);
  const t2 = performance.now();
  const first = summary.filter((s) => s.magnitude === scales.values[0]);
  let best = 0;
  first.forEach((s, i) => {
    if (s.max_kl > first[best].max_kl) best = i;
  });
  return {
    source: pair.source,
    target: pair.target,
    singular_values: solve.singularValues,
    relative_residuals: solve.relativeResiduals,
    converged: solve.converged,
    products: solve.products,
    kl: summary,
    max_kl: first[best].max_kl,
    best_vector: best,
    top_vector_kl: first[0].max_kl,
    solver,
    seconds: { solve: solveSeconds, kl: (t2 - t1) / 1000, ...(sweepSeconds === undefined ? {} : { sweep: sweepSeconds }) },
  };
}

/** Relative cost of a pair, for the ETA: its products run T - S layers, its KL L - 1 - S. */
export function pairWork(p: AtlasPair, numLayers: number): number {
  return 2 * (p.target - p.source) + 0.25 * (numLayers - 1 - p.source);
}
