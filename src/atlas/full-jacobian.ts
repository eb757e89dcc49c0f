// Every target of one source from the whole Jacobian: the atlas's way to share products across pairs
// when a source has many targets and the spectrum is flat.
//
// Why. A pair's block Lanczos needs P products (a JVP through S+1..T and a VJP back each), and
// nothing of them serves another pair: on the random-weight Qwen3 shapes the top singular subspaces of
// neighbouring targets overlap only 20-60%, and a basis grown for all targets at once (a Krylov space
// of sum_T J_T^T J_T / sigma_1(T)^2, measured) had not settled one target's values after 384 vectors
// where one pair's Lanczos needs about 100. What does serve every target is a JVP: the one from S to
// the largest target passes every other on its way (SteeringEngine.applyJAtTargets). So d JVPs of
// the unit vectors give J_T e_i for every T at once: the whole J_T of every target, at the price of
// the longest. Its Gram matrix J_T^T J_T (d x d, one matrix product in wasm) gives the top-k
// exactly (block Lanczos on the small dense matrix, to a far tighter tolerance than the atlas's), and
// the certificate is the pair's own: one VJP of the k images J_T x through S+1..T gives J_T^T J_T x,
// hence ||J_T^T J_T x - theta x|| / theta_1, the residual block Lanczos reports.
//
// Cost, in J^T J products through one layer (measured on the 0.6B shape, 4 prompts of 15-16 tokens,
// 2 threads: a product of a block of 4 about 38 ms per vector and layer inside block Lanczos, a JVP
// column 22 ms, so JVP_COST 0.6; a target's own work, its Gram matrix, the top-k of it and the
// certificate, about 1.6 s + 0.17 s per layer of T - S, so OWN_COST 40 products plus k/2 per layer):
// 0.6 d (T_max - S) for the sweep plus 40 + k/2 (T - S) per target, against P (T - S) per target for
// separate Lanczos runs of P products; the whole Jacobian wins once a source has more than about
// 0.6 d / P targets (15 at P = 90 on that shape). The images are kept until each target's Gram is
// formed: d * outputDim floats per target, so the targets go in sweeps that fit the budget.
import type { SteeringEngine } from "../engine/steering-engine.js";
import { matmulABt, matmulAB } from "../kernels/matmul.js";
import { blockLanczos } from "../solvers/block-lanczos.js";
import type { SolveResult } from "../solvers/common.js";

/** Bytes of kept images a sweep may hold (default): 27 targets of the 0.6B shape fit, 1.7B takes 8 per sweep. */
export const DEFAULT_SWEEP_BYTES = 2 * 2 ** 30;
/** Unit vectors per JVP pass. */
const COLUMNS_PER_PASS = 32;
/** Columns of the Gram matrix per matrix product. */
const GRAM_COLUMNS = 256;

export interface FullJacobianOptions {
  numVectors: number;
  tol: number;
  seed: number;
  /** Targets of the sweep already solved (a resumed atlas): their images are formed, nothing else. */
  skip?: ReadonlySet<number>;
}

/** One target's answer: block Lanczos's fields (products = the JVP columns of its sweep). */
export interface FullJacobianSolution extends SolveResult {
  target: number;
}

/** The targets in sweeps whose kept images fit the budget (ascending; each sweep ends at its own top). */
export function jacobianSweeps(targets: readonly number[], bytesPerTarget: number, budgetBytes = DEFAULT_SWEEP_BYTES): number[][] {
  const per = Math.max(1, Math.floor(budgetBytes / bytesPerTarget));
  const out: number[][] = [];
  for (let i = 0; i < targets.length; i += per) out.push(targets.slice(i, i + per));
  return out;
}

/** A JVP column through one layer, in J^T J products through one layer (see the cost note above). */
export const JVP_COST = 0.6;
/** A target's Gram matrix and its top-k, in J^T J products through one layer. */
export const OWN_COST = 40;

/**
 * Estimated cost, in one-layer J^T J products, of the targets of source S by full Jacobians
 * (sweeps, each target's own work and certificate) and by separate Lanczos runs of `productsPerPair`
 * products each.
 */
export function sweepCost(S: number, targets: readonly number[], dim: number, numVectors: number, bytesPerTarget: number, productsPerPair: number, budgetBytes?: number): { jacobian: number; lanczos: number } {
  const span = targets.reduce((s, t) => s + (t - S), 0);
  const sweeps = jacobianSweeps(targets, bytesPerTarget, budgetBytes);
  return {
    jacobian: sweeps.reduce((s, w) => s + JVP_COST * dim * (w.at(-1)! - S), 0) + OWN_COST * targets.length + (numVectors / 2) * span,
    lanczos: productsPerPair * span,
  };
}

/**
 * Solve every target of `sweep` (ascending) on `span`, an engine (or view) for (S, max of sweep):
 * d JVPs, then per target the Gram matrix, its top-k, the certificate, and onTarget (in target order,
 * awaited: the caller scores and writes the pair before the next one is formed). Every target of the
 * sweep is in its JVPs, skipped or not, so a target's numbers do not depend on which others were left.
 */
export async function solveSweep(
  span: SteeringEngine,
  sweep: readonly number[],
  opts: FullJacobianOptions,
  onTarget: (s: FullJacobianSolution) => Promise<void> | void,
  onColumns?: (done: number, total: number) => void,
): Promise<void> {
  const S = span.site.sourceLayer;
  const d = span.inputDim, out = span.outputDim, k = opts.numVectors;
  const rt = span.rt;
  // Row i of images[t] is J_T e_i: J_T^T, row-major [d, outputDim].
  const images = sweep.map(() => new Float32Array(d * out));
  for (let c0 = 0; c0 < d; c0 += COLUMNS_PER_PASS) {
    const n = Math.min(COLUMNS_PER_PASS, d - c0);
    const E = Array.from({ length: n }, (_, j) => {
      const e = new Float64Array(d);
      e[c0 + j] = 1;
      return e;
    });
    const got = await span.applyJAtTargets(E, sweep);
    got.forEach((cols, ti) => cols.forEach((y, j) => images[ti]!.set(y, (c0 + j) * out)));
    onColumns?.(c0 + n, d);
  }
  for (const [ti, T] of sweep.entries()) {
    if (opts.skip?.has(T)) {
      images[ti] = new Float32Array(0);
      continue;
    }
    // Gram G = J^T J (f32 product, symmetrised in f64), its top-k, and the images J x of the top-k.
    const mark = rt.heap.mark();
    let G: Float64Array[];
    let vectors: Float64Array[], values: number[], JX: Float32Array[];
    try {
      const a = rt.heap.allocF32(d * out), g = rt.heap.allocF32(d * GRAM_COLUMNS);
      rt.heap.f32(a, d * out).set(images[ti]!);
      images[ti] = new Float32Array(0);
      // G[:, j0..j1) = A A[j0..j1)^T: a column block at a time, so only that block is packed (the
      // whole of A packed would be another d * outputDim floats: 268 MB on the 1.7B shape).
      G = Array.from({ length: d }, () => new Float64Array(d));
      for (let j0 = 0; j0 < d; j0 += GRAM_COLUMNS) {
        const nb = Math.min(GRAM_COLUMNS, d - j0);
        matmulABt(rt, a, a + 4 * j0 * out, g, d, nb, out);
        const gv = rt.heap.f32(g, d * nb);
        for (let i = 0; i < d; i++) for (let j = 0; j < nb; j++) G[i]![j0 + j] = gv[i * nb + j]!;
      }
      for (let i = 0; i < d; i++) {
        for (let j = 0; j < i; j++) {
          const m = 0.5 * (G[i]![j]! + G[j]![i]!);
          G[i]![j] = m;
          G[j]![i] = m;
        }
      }
      const inner = blockLanczos({ dim: d, apply: (v) => symmetricProduct(G, v) }, { numVectors: k, tol: Math.min(1e-5, opts.tol * 1e-3), seed: opts.seed, blockSize: Math.min(k, 8) });
      vectors = inner.vectors;
      values = inner.singularValues.map((s) => s * s);
      const x = rt.heap.allocF32(k * d), jx = rt.heap.allocF32(k * out);
      vectors.forEach((v, j) => rt.heap.f32(x + 4 * j * d, d).set(Float32Array.from(v)));
      matmulAB(rt, x, a, jx, k, out, d);
      JX = Array.from({ length: k }, (_, j) => Float32Array.from(rt.heap.f32(jx + 4 * j * out, out)));
    } finally {
      rt.heap.release(mark);
    }
    // The certificate, from the pair's own VJP (not from G).
    const AX = await span.restrict(S, T).applyJt(JX);
    const top = Math.max(values[0] ?? 0, Number.MIN_VALUE);
    const residuals = vectors.map((x, i) => {
      let r2 = 0;
      for (let j = 0; j < d; j++) r2 += (AX[i]![j]! - values[i]! * x[j]!) ** 2;
      return Math.sqrt(r2);
    });
    const relativeResiduals = residuals.map((r) => r / top);
    await onTarget({
      target: T,
      vectors,
      singularValues: values.map((v) => Math.sqrt(Math.max(v, 0))),
      residuals,
      relativeResiduals,
      iterations: Math.ceil(d / COLUMNS_PER_PASS),
      products: d,
      converged: Math.max(...relativeResiduals) <= opts.tol,
    });
  }
}

function symmetricProduct(G: readonly Float64Array[], v: Float64Array): Float64Array {
  const out = new Float64Array(v.length);
  for (let i = 0; i < G.length; i++) {
    const row = G[i]!;
    let s = 0;
    for (let j = 0; j < row.length; j++) s += row[j]! * v[j]!;
    out[i] = s;
  }
  return out;
}
