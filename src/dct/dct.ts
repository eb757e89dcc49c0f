// Exponential Deep Causal Transcoder (Andrew Mack, "Deep Causal Transcoding", 2024; implemented from
// its description and the research line's account, not copied). The causal map from the steering
// site to the target,
//
//   Delta(theta) = target(sv0 + theta) - target(sv0)     (jacsteer's target: CONTRACT.md section 1),
//
// is approximated by m features in Mack's exponential form, sum_i alpha_i u_i (exp(<v_i, theta>) - 1), and
// the features are found by Orthogonalised Gradient Iteration (OGI) on the causal-importance objective
//
//   F(U, V) = (1/m) sum_i <u_i, Delta(R v_i)>,      ||u_i|| = ||v_i|| = 1,
//
// at a radius R calibrated so the map is mildly nonlinear there. Each iteration:
//   1. V <- orthonormal (modified Gram-Schmidt, twice, in index order);
//   2. one batched nonlinear pass at the points R v_i with the VJP there (SteeringEngine.steered):
//      Delta_i = Delta(R v_i) and g_i = J(sv0 + R v_i)^T u_i;
//   3. F at (U, V) is recorded; U_i <- Delta_i / ||Delta_i||, V_i <- g_i / ||g_i|| (the "infinite step"
//      gradient update: dF/du_i is proportional to Delta_i, dF/dv_i to R g_i).
// After the last iteration V is orthonormalised once more and F is evaluated there (one forward pass):
// the history has iterations + 1 values.
//
// Calibration (Mack's linear-regime criterion): n random unit directions w_j (seeded) and
//   ratio(R) = sqrt( mean_j ||Delta(R w_j) - R J w_j||^2 / ||R J w_j||^2 ),
// R solves ratio(R) = target (0.5). The root is bracketed by doubling or halving from a start radius
// and then found by the Illinois variant of regula falsi on (log R, log ratio), where the curve is
// close to a straight line; every evaluation is one batched forward pass of the n directions.
//
// Differences from Mack's code, on purpose: the target is jacsteer's (each target row of each prompt,
// concatenated, weights applied) rather than the mean over positions and prompts, so at small R the
// method reduces to the SVD of the same J that power-iter factors; V is orthonormalised by
// Gram-Schmidt (a QR whose diagonal is positive) so runs are reproducible bit for bit; the root finder
// is the one above, not scipy's brentq on a fixed bracket [0.001, 100] (a fixed bracket fails where
// residual norms are far from Qwen's).
import type { SteeredResult } from "../engine/steered-pass.js";
import { dot, gaussianStream, norm, orthonormalize } from "../linalg/dense.js";
import { InputError } from "../model/qwen3.js";

export interface DctEngine {
  readonly inputDim: number;
  readonly outputDim: number;
  targets(): Float32Array[];
  applyJ(V: readonly ArrayLike<number>[]): Promise<Float32Array[]>;
  steered(points: readonly ArrayLike<number>[], cotangents?: readonly ArrayLike<number>[]): Promise<SteeredResult>;
}

/** Mack's defaults where he states them (tau 10, target ratio 0.5, 30 calibration directions); m 8 as power-iter's top 8. */
export const DCT_DEFAULTS = { numVectors: 8, iterations: 10, targetRatio: 0.5, calibrationVectors: 30 };
/** Most ratio evaluations while bracketing, and in all. */
export const MAX_BRACKET_STEPS = 40;
export const MAX_CALIBRATION_EVALS = 80;
/** The root finder stops when log R is known to this (a relative 1e-6 in R) or |log ratio - log target| is below FTOL. */
export const XTOL = 1e-6;
export const FTOL = 1e-7;

export interface DctInit {
  /** Calibration directions (unit), V and U at the start (unit rows; U of length outputDim). */
  calibration: Float32Array[];
  V: Float64Array[];
  U: Float64Array[];
}

export interface DctOptions {
  numVectors: number;
  iterations: number;
  targetRatio: number;
  calibrationVectors: number;
  seed: number;
  /** Skip the calibration and use this radius. */
  radius?: number;
  /** Where the bracketing starts (the CLI: 0.1 x the median layer-S norm). */
  radiusStart: number;
  /** Directions and starting factors instead of the seeded ones (the PyTorch cross-check passes them over). */
  init?: DctInit;
  onProgress?: (e: DctProgress) => void;
}

export type DctProgress =
  | { phase: "jv"; seconds: number }
  | { phase: "calibrate"; evaluation: number; radius: number; ratio: number; seconds: number; bracketed: boolean }
  | { phase: "iterate"; iteration: number; iterations: number; objective: number; seconds: number }
  | { phase: "final"; objective: number; seconds: number };

export interface CalibrationResult {
  radius: number;
  /** The ratio at that radius, and every evaluation in order. */
  ratio: number;
  evaluations: { radius: number; ratio: number }[];
}

export interface DctResult {
  /** Unit input directions v_i, in the order of their final terms <u_i, Delta(R v_i)>, largest first. */
  vectors: Float64Array[];
  /** The final terms, in the same order. */
  terms: number[];
  /** Row i came from factor order[i] of the iteration. */
  order: number[];
  radius: number;
  calibration: CalibrationResult | null;
  /** F(U, V) at the start of each iteration, then at the final V: iterations + 1 values. */
  objective: number[];
  /** Nonlinear passes done (calibration evaluations, iterations with their VJP, the final forward) and J V blocks. */
  passes: { jv: number; calibration: number; iterations: number; final: number };
}

/** The seeded starting point: n calibration directions, then V (m x d), then U (m x outputDim), all unit rows from one Gaussian stream. */
export function seededInit(seed: number, d: number, outputDim: number, m: number, nCal: number): DctInit {
  const g = gaussianStream(seed);
  const unit = (len: number) => {
    const x = new Float64Array(len);
    for (let i = 0; i < len; i++) x[i] = g();
    const n = norm(x);
    for (let i = 0; i < len; i++) x[i] /= n;
    return x;
  };
  const calibration = Array.from({ length: nCal }, () => Float32Array.from(unit(d)));
  const V = Array.from({ length: m }, () => unit(d));
  const U = Array.from({ length: m }, () => unit(outputDim));
  return { calibration, V, U };
}

function concat(parts: readonly Float32Array[], n: number): Float32Array {
  const out = new Float32Array(n);
  let o = 0;
  for (const p of parts) out.set(p, o), (o += p.length);
  return out;
}

/** Delta_i = target_i - base in float64. */
function deltas(targets: readonly Float32Array[], base: Float32Array): Float64Array[] {
  return targets.map((t) => Float64Array.from(t, (x, i) => x - base[i]!));
}

/** Solve ratio(R) = target for the calibration directions W (unit, float32). */
export async function calibrateRadius(
  engine: DctEngine,
  W: readonly Float32Array[],
  target: number,
  radiusStart: number,
  onProgress?: (e: DctProgress) => void,
): Promise<CalibrationResult> {
  if (!(target > 0)) throw new RangeError(`calibrateRadius: target ratio ${target} must be positive`);
  if (!(radiusStart > 0) || !Number.isFinite(radiusStart)) throw new RangeError(`calibrateRadius: start radius ${radiusStart} must be a positive number`);
  let t0 = performance.now();
  const jw = (await engine.applyJ(W)).map((x) => Float64Array.from(x));
  onProgress?.({ phase: "jv", seconds: (performance.now() - t0) / 1000 });
  const base = concat(engine.targets(), engine.outputDim);
  const evaluations: { radius: number; ratio: number }[] = [];
  let bracketed = false;
  const ratio = async (R: number) => {
    t0 = performance.now();
    const { targets } = await engine.steered(W.map((w) => Float32Array.from(w, (x) => R * x)));
    let acc = 0;
    targets.forEach((t, j) => {
      const l = jw[j]!;
      let num = 0, den = 0;
      for (let i = 0; i < t.length; i++) {
        const lin = R * l[i]!;
        num += (t[i]! - base[i]! - lin) ** 2;
        den += lin * lin;
      }
      if (!(den > 0)) throw new InputError(`calibration direction ${j} has J w = 0: the target does not depend on it (is T's target empty?)`);
      acc += num / den;
    });
    const q = Math.sqrt(acc / targets.length);
    evaluations.push({ radius: R, ratio: q });
    onProgress?.({ phase: "calibrate", evaluation: evaluations.length, radius: R, ratio: q, seconds: (performance.now() - t0) / 1000, bracketed });
    if (!Number.isFinite(q)) throw new InputError(`calibration: the ratio at R = ${R.toPrecision(6)} is ${q} (the steered pass overflowed)`);
    return q;
  };
  // f(x) = log ratio(e^x) - log target: negative in the linear regime, positive past it.
  const f = async (x: number) => Math.log(await ratio(Math.exp(x))) - Math.log(target);
  let a = Math.log(radiusStart), fa = await f(a);
  let b = a, fb = fa;
  if (fa === 0) return { radius: radiusStart, ratio: target, evaluations };
  const step = Math.LN2;
  for (let s = 0; ; s++) {
    if (s >= MAX_BRACKET_STEPS) {
      const last = evaluations.at(-1)!;
      throw new InputError(
        fa < 0
          ? `calibration: the ratio stays below ${target} up to R = ${last.radius.toPrecision(6)} (${last.ratio.toPrecision(4)} there): the map is still linear; give --radius`
          : `calibration: the ratio stays above ${target} down to R = ${last.radius.toPrecision(6)} (${last.ratio.toPrecision(4)} there): float32 rounding dominates the nonlinear part at small R; give --radius`,
      );
    }
    b = fa < 0 ? b + step : b - step;
    fb = await f(b);
    if (fb === 0) return { radius: Math.exp(b), ratio: target, evaluations };
    if (Math.sign(fb) !== Math.sign(fa)) break;
    a = b, fa = fb;
  }
  bracketed = true;
  // Illinois: regula falsi that halves the stale end's value, so both ends move.
  let c = b, fc = fb;
  while (Math.abs(b - a) > XTOL && evaluations.length < MAX_CALIBRATION_EVALS) {
    c = b - (fb * (b - a)) / (fb - fa);
    fc = await f(c);
    if (Math.abs(fc) <= FTOL) break;
    if (Math.sign(fc) !== Math.sign(fb)) a = b, fa = fb;
    else fa /= 2;
    b = c, fb = fc;
  }
  return { radius: Math.exp(c), ratio: target * Math.exp(fc), evaluations };
}

/** Exponential DCT by OGI: calibration (unless opts.radius), then opts.iterations iterations and a final evaluation. */
export async function exponentialDct(engine: DctEngine, opts: DctOptions): Promise<DctResult> {
  const d = engine.inputDim, m = opts.numVectors;
  if (!Number.isInteger(m) || m < 1 || m > d) throw new RangeError(`exponentialDct: ${m} vectors (1..${d})`);
  if (!Number.isInteger(opts.iterations) || opts.iterations < 1) throw new RangeError(`exponentialDct: ${opts.iterations} iterations`);
  const init = opts.init ?? seededInit(opts.seed, d, engine.outputDim, m, opts.calibrationVectors);
  const passes = { jv: 0, calibration: 0, iterations: 0, final: 0 };
  let calibration: CalibrationResult | null = null;
  let R = opts.radius;
  if (R === undefined) {
    calibration = await calibrateRadius(engine, init.calibration, opts.targetRatio, opts.radiusStart, opts.onProgress);
    passes.jv = 1;
    passes.calibration = calibration.evaluations.length;
    R = calibration.radius;
  }
  const base = concat(engine.targets(), engine.outputDim);
  let V: Float64Array[] = init.V.map((v) => Float64Array.from(v));
  let U: Float64Array[] = init.U.map((u) => Float64Array.from(u));
  const objective: number[] = [];
  const radius = R;
  const points = (X: readonly Float64Array[]) => X.map((v) => Float32Array.from(v, (x) => radius * x));
  for (let it = 0; it < opts.iterations; it++) {
    const t0 = performance.now();
    V = orthonormalize(V);
    const res = await engine.steered(points(V), U.map((u) => Float32Array.from(u)));
    passes.iterations++;
    const D = deltas(res.targets, base);
    objective.push(D.reduce((s, x, i) => s + dot(U[i]!, x), 0) / m);
    U = D.map((x, i) => unitOrThrow(x, `Delta(R v_${i})`, it));
    V = res.grads!.map((g, i) => unitOrThrow(g, `J^T u_${i}`, it));
    opts.onProgress?.({ phase: "iterate", iteration: it + 1, iterations: opts.iterations, objective: objective.at(-1)!, seconds: (performance.now() - t0) / 1000 });
  }
  const t0 = performance.now();
  V = orthonormalize(V);
  const D = deltas((await engine.steered(points(V))).targets, base);
  passes.final = 1;
  const terms = D.map((x, i) => dot(U[i]!, x));
  objective.push(terms.reduce((s, x) => s + x, 0) / m);
  opts.onProgress?.({ phase: "final", objective: objective.at(-1)!, seconds: (performance.now() - t0) / 1000 });
  const order = terms.map((_, i) => i).sort((i, j) => terms[j]! - terms[i]! || i - j);
  return { vectors: order.map((i) => V[i]!), terms: order.map((i) => terms[i]!), order, radius, calibration, objective, passes };
}

function unitOrThrow(x: Float64Array, what: string, it: number): Float64Array {
  const n = norm(x);
  if (!(n > 0) || !Number.isFinite(n)) throw new InputError(`dct iteration ${it + 1}: ${what} has norm ${n}; the radius may be too large (the steered pass overflowed) or the target does not depend on the steering`);
  return x.map((v) => v / n);
}
