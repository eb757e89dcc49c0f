// The linear-regime check (`jacsteer linearity`): how far a steering direction can be pushed before
// the Jacobian stops describing what it does. For a unit vector v and a radius r,
//
//   ratio(r) = ||Delta(r v) - r J v|| / ||r J v||,   Delta(r v) = target(sv0 + r v) - target(sv0),
//
// where target and J are the steering Jacobian's (CONTRACT.md section 1: the output of layer T at the
// target positions of every prompt, weights applied, concatenated). ratio(r) -> 0 as r -> 0 (the
// remainder is O(r^2)); the radius where it reaches a target (0.5 by default, the value Mack's Deep
// Causal Transcoders calibrate their radius to) is where the linear picture stops being the main part.
//
// Cost: one batched J V for all vectors, then one nonlinear pass per radius with all vectors stacked
// (SteeringEngine.steered). Delta is formed in float64 from two float32 targets, so at very small r
// the ratio is float32 rounding over a tiny ||r J v|| and rises again as r falls: a curve that falls
// as r grows is flagged (`nonMonotone`) and the CLI warns.
import type { SteeredResult } from "../engine/steered-pass.js";
import { norm } from "../linalg/dense.js";
import { InputError } from "../model/qwen3.js";

/** What the check needs of the engine (SteeringEngine has it; tests can fake it). */
export interface LinearityEngine {
  readonly inputDim: number;
  readonly outputDim: number;
  targets(): Float32Array[];
  applyJ(V: readonly ArrayLike<number>[]): Promise<Float32Array[]>;
  steered(points: readonly ArrayLike<number>[]): Promise<SteeredResult>;
}

/** Radii as fractions of the median layer-S residual norm (research line's KL scale 0.35 among them). */
export const DEFAULT_RADIUS_FRACTIONS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3];
export const DEFAULT_TARGET_RATIO = 0.5;
/** A curve counts as falling where a ratio is below this share of the ratio at the previous (smaller) radius. */
export const NON_MONOTONE_DROP = 0.9;

export type CrossingStatus = "interpolated" | "below-range" | "not-reached" | "no-linear-part";

export interface LinearityResult {
  radii: number[];
  target: number;
  /** ratios[j][k]: vector j at radii[k] (NaN when J v_j = 0). */
  ratios: number[][];
  /** ||J v_j|| for the unit vector v_j. */
  jvNorms: number[];
  /** ||Delta(r_k v_j)||. */
  deltaNorms: number[][];
  /** Where ratio_j first reaches the target, interpolated between the radii on log-log axes; null when not in range. */
  radiusAtTarget: (number | null)[];
  status: CrossingStatus[];
  /** The ratio falls by more than 10% from one radius to the next somewhere (float32 noise at small r, or a nonlinearity that saturates). */
  nonMonotone: boolean[];
  /** Nonlinear passes (one per radius) and J V blocks (one). */
  passes: number;
}

export interface LinearityOptions {
  radii: readonly number[];
  target: number;
  /** After each pass: 1 is the J V block, then one per radius. */
  onPass?: (e: { pass: number; passes: number; seconds: number; radius: number | null }) => void;
}

/** Unit copies of the vectors (float64 norm), and their norms; a zero vector is an error naming its row. */
export function unitVectors(vectors: readonly ArrayLike<number>[], what: string): { units: Float32Array[]; norms: number[] } {
  const norms: number[] = [];
  const units = vectors.map((v, i) => {
    const n = norm(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new InputError(`${what}: row ${i} has norm ${n}: a direction needs a non-zero finite vector`);
    norms.push(n);
    return Float32Array.from(v, (x) => x / n);
  });
  return { units, norms };
}

export async function linearity(engine: LinearityEngine, vectors: readonly Float32Array[], opts: LinearityOptions): Promise<LinearityResult> {
  const radii = [...opts.radii];
  if (radii.length === 0) throw new RangeError("linearity: no radii");
  for (let k = 0; k < radii.length; k++) {
    if (!(radii[k]! > 0) || !Number.isFinite(radii[k]!)) throw new RangeError(`linearity: radius ${radii[k]} is not a positive number`);
    if (k && !(radii[k]! > radii[k - 1]!)) throw new RangeError("linearity: radii must be increasing");
  }
  const passes = radii.length + 1;
  let t0 = performance.now();
  const jv = await engine.applyJ(vectors);
  opts.onPass?.({ pass: 1, passes, seconds: (performance.now() - t0) / 1000, radius: null });
  const base = concat(engine.targets(), engine.outputDim);
  const jvNorms = jv.map((x) => norm(x));
  const ratios: number[][] = vectors.map(() => []);
  const deltaNorms: number[][] = vectors.map(() => []);
  for (let k = 0; k < radii.length; k++) {
    const r = radii[k]!;
    t0 = performance.now();
    const { targets } = await engine.steered(vectors.map((v) => Float32Array.from(v, (x) => r * x)));
    targets.forEach((t, j) => {
      let num = 0, den = 0, dn = 0;
      const l = jv[j]!;
      for (let i = 0; i < t.length; i++) {
        const delta = t[i]! - base[i]!;
        const lin = r * l[i]!;
        num += (delta - lin) ** 2;
        den += lin * lin;
        dn += delta * delta;
      }
      ratios[j]!.push(den > 0 ? Math.sqrt(num / den) : NaN);
      deltaNorms[j]!.push(Math.sqrt(dn));
    });
    opts.onPass?.({ pass: k + 2, passes, seconds: (performance.now() - t0) / 1000, radius: r });
  }
  const crossings = ratios.map((rs) => crossing(radii, rs, opts.target));
  return {
    radii,
    target: opts.target,
    ratios,
    jvNorms,
    deltaNorms,
    radiusAtTarget: crossings.map((c) => c.radius),
    status: crossings.map((c) => c.status),
    nonMonotone: ratios.map((rs) => rs.some((x, k) => k > 0 && x < NON_MONOTONE_DROP * rs[k - 1]!)),
    passes,
  };
}

/**
 * The first radius where the ratio reaches `target`: between the last radius below it and the first
 * at or above it, the straight line through the two points on log-log axes (the remainder grows like
 * a power of r, so log ratio is close to linear in log r there).
 */
export function crossing(radii: readonly number[], ratios: readonly number[], target: number): { radius: number | null; status: CrossingStatus } {
  if (ratios.some((x) => Number.isNaN(x))) return { radius: null, status: "no-linear-part" };
  const k = ratios.findIndex((x) => x >= target);
  if (k < 0) return { radius: null, status: "not-reached" };
  if (k === 0) return { radius: null, status: "below-range" };
  const r0 = radii[k - 1]!, r1 = radii[k]!, q0 = ratios[k - 1]!, q1 = ratios[k]!;
  if (q1 === target) return { radius: r1, status: "interpolated" };
  if (!(q0 > 0)) {
    // log q0 does not exist: linear interpolation instead
    return { radius: r0 + ((target - q0) * (r1 - r0)) / (q1 - q0), status: "interpolated" };
  }
  const t = (Math.log(target) - Math.log(q0)) / (Math.log(q1) - Math.log(q0));
  return { radius: Math.exp(Math.log(r0) + t * (Math.log(r1) - Math.log(r0))), status: "interpolated" };
}

function concat(parts: readonly Float32Array[], n: number): Float32Array {
  const out = new Float32Array(n);
  let o = 0;
  for (const p of parts) out.set(p, o), (o += p.length);
  return out;
}
