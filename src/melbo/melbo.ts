// MELBO training: n orthogonal steering vectors of norm R, each found by gradient ascent of the
// objective (objective.ts) on the sphere ||sv|| = R, orthogonal to the vectors found before it, as
// the MELBO paper's code does with `orthogonal_vectors=True`:
//
//   start:  random Gaussian, projected off the earlier vectors, scaled to norm R
//   step:   g = gradient of -L (AdamW minimises); g projected off the earlier vectors, then onto the
//           sphere's tangent at sv (g -= <g, sv> sv / R^2); AdamW (amsgrad) step; sv projected off
//           the earlier vectors again and renormalised to R
//
// The loss recorded for a step is L at sv before that step (as the paper's code records it); the
// final loss of a vector is L evaluated once more at the vector returned.
import { gaussianStream } from "../linalg/dense.js";
import { AmsgradAdamW, type AdamWOptions } from "./adamw.js";
import type { MelboObjective, MelboPower } from "./objective.js";

export { MelboObjective, type MelboPower, type MelboSite } from "./objective.js";
export { AmsgradAdamW, MELBO_ADAMW, type AdamWOptions } from "./adamw.js";

/** The MELBO paper code's defaults (power p = 2; q = 1 as the issue sets it; lr 1e-3; 300 steps). */
export const MELBO_DEFAULTS = { p: 2, q: 1, steps: 300, lr: 1e-3, numVectors: 8, positions: 2 } as const;

/**
 * Default radius: this factor times the median norm of the unsteered layer-S output over every
 * position of every prompt. MELBO's R is a hyperparameter to tune (the paper picks it where the loss
 * starts growing faster than linearly in R); half the typical residual norm is a perturbation big
 * enough to move later layers and small enough not to swamp the stream. The median, not the mean,
 * so that a few outlier positions (the first token's "attention sink" norm) do not set it.
 */
export const DEFAULT_RADIUS_FACTOR = 0.5;

export function defaultRadius(sourceNorms: readonly number[]): number {
  const s = [...sourceNorms].sort((a, b) => a - b);
  if (s.length === 0) throw new Error("defaultRadius: no positions");
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return DEFAULT_RADIUS_FACTOR * median;
}

export interface MelboOptions extends MelboPower {
  numVectors: number;
  steps: number;
  radius: number;
  seed: number;
  /** AdamW settings; lr and weightDecay are the ones the CLI exposes. */
  adam: AdamWOptions;
  /** Called after every step with the loss at the start of that step. */
  onStep?: (e: { vector: number; step: number; loss: number }) => void;
}

export interface MelboResult {
  /** norm R each, mutually orthogonal */
  vectors: Float64Array[];
  /** per vector: the loss at the start of each step */
  losses: number[][];
  /** per vector: the loss at the returned vector */
  finalLosses: number[];
}

/** v -= sum_j <v, u_j> u_j for unit u_j, twice (one pass loses orthogonality to rounding). */
function projectOff(v: Float64Array, units: readonly Float64Array[]): void {
  for (let pass = 0; pass < 2; pass++) {
    for (const u of units) {
      let c = 0;
      for (let i = 0; i < v.length; i++) c += v[i] * u[i];
      for (let i = 0; i < v.length; i++) v[i] -= c * u[i];
    }
  }
}

function scaleTo(v: Float64Array, R: number): void {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s);
  if (!(n > 0)) throw new Error("MELBO: the steering vector collapsed to zero (the radius or the learning rate is degenerate)");
  for (let i = 0; i < v.length; i++) v[i] *= R / n;
}

/** What the training asks of the objective: L at sv, and dL/dsv when `gradient`. */
export interface MelboRequest {
  sv: Float64Array;
  gradient: boolean;
}

/** The objective's answer: L(sv), and dL/dsv (float64) when asked. */
export interface MelboAnswer {
  loss: number;
  gradient: Float64Array | null;
}

/**
 * The training as a generator (like the solver bodies, src/solvers/common.ts): it yields the points
 * it needs the objective at and receives the answers, so one body serves the autodiff reference
 * (trainMelbo, synchronous) and the batched engine (trainMelboAsync), and a run is a deterministic
 * function of the answers it receives: replaying them resumes it bit for bit (src/solvers/replay.ts).
 */
export function* melboBody(d: number, opts: Omit<MelboOptions, "p" | "q">): Generator<MelboRequest, MelboResult, MelboAnswer> {
  const { numVectors, steps, radius: R } = opts;
  if (numVectors > d) throw new Error(`MELBO: ${numVectors} orthogonal vectors do not fit in dimension ${d}`);
  if (!(R > 0) || !Number.isFinite(R)) throw new Error(`MELBO: radius ${R} must be positive`);
  const rand = gaussianStream(opts.seed);
  const units: Float64Array[] = [];
  const vectors: Float64Array[] = [];
  const losses: number[][] = [];
  const finalLosses: number[] = [];
  for (let k = 0; k < numVectors; k++) {
    const x = Float64Array.from({ length: d }, () => rand());
    projectOff(x, units);
    scaleTo(x, R);
    const adam = new AmsgradAdamW(d, opts.adam);
    const curve: number[] = [];
    for (let step = 0; step < steps; step++) {
      const { loss, gradient } = yield { sv: x, gradient: true };
      curve.push(loss);
      const g = Float64Array.from(gradient!);
      for (let i = 0; i < d; i++) g[i] = -g[i];
      projectOff(g, units);
      let c = 0;
      for (let i = 0; i < d; i++) c += g[i] * x[i];
      for (let i = 0; i < d; i++) g[i] -= (c * x[i]) / (R * R);
      adam.step(x, g);
      projectOff(x, units);
      scaleTo(x, R);
      opts.onStep?.({ vector: k, step: step + 1, loss });
    }
    vectors.push(x);
    losses.push(curve);
    finalLosses.push((yield { sv: x, gradient: false }).loss);
    const unit = Float64Array.from(x, (v) => v / R);
    units.push(unit);
  }
  return { vectors, losses, finalLosses };
}

/** Objective evaluations a run makes: steps + 1 per vector (the last one without a gradient). */
export function melboEvaluations(numVectors: number, steps: number): number {
  return numVectors * (steps + 1);
}

/** MELBO on the autodiff objective (the single-thread reference). */
export function trainMelbo(objective: MelboObjective, opts: MelboOptions): MelboResult {
  const body = melboBody(objective.dim, opts);
  let next = body.next();
  while (!next.done) next = body.next(objective.evaluate(next.value.sv, opts, next.value.gradient));
  return next.value;
}

/** MELBO with an objective that may answer asynchronously (the batched engine, engine-objective.ts). */
export async function trainMelboAsync(dim: number, evaluate: (r: MelboRequest) => Promise<MelboAnswer>, opts: Omit<MelboOptions, "p" | "q">): Promise<MelboResult> {
  const body = melboBody(dim, opts);
  let next = body.next();
  while (!next.done) next = body.next(await evaluate(next.value));
  return next.value;
}

/**
 * MELBO's defaults (300 steps, lr 1e-3) often stop while the objective still climbs. Per vector: the
 * relative rise of the objective over the last 10% of the steps (from the loss at the start of step
 * steps - ceil(steps / 10) to the final loss), or null with fewer than 2 steps.
 */
export function lateRise(curve: readonly number[], finalLoss: number): number | null {
  const steps = curve.length;
  if (steps < 2) return null;
  const from = curve[steps - Math.ceil(steps / 10)];
  return from === 0 ? null : (finalLoss - from) / Math.abs(from);
}

/** A rise over the last 10% of the steps above this share means "not converged". */
export const MELBO_MAX_LATE_RISE = 0.01;

/**
 * Each vector's lateRise and, for every one above MELBO_MAX_LATE_RISE, the "not converged" warning
 * (one text for the command line and the library call).
 */
export function lateRiseWarnings(result: Pick<MelboResult, "losses" | "finalLosses">, steps: number): { rises: (number | null)[]; warnings: string[] } {
  const rises = result.losses.map((curve, i) => lateRise(curve, result.finalLosses[i]!));
  const warnings: string[] = [];
  rises.forEach((rise, i) => {
    if (rise !== null && rise > MELBO_MAX_LATE_RISE) {
      warnings.push(
        `MELBO vector ${i} is not converged: its objective still rose ${(100 * rise).toFixed(1)}% over the last 10% of the ${steps} steps ` +
          `(more than ${100 * MELBO_MAX_LATE_RISE}%); raise --steps (e.g. --steps ${steps * 10}) or --lr`,
      );
    }
  });
  return { rises, warnings };
}
