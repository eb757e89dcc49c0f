// How long a solver run has left, from its progress: the remaining block applications times the mean
// wall time of one. The remaining count is known when the run goes to a fixed number of blocks
// (--max-iters with --tol 0); when it runs to a tolerance it is extrapolated from how fast the
// convergence metric (Lanczos: the largest relative residual; power iteration: the subspace change)
// has been falling on a log scale over the last few blocks. Both solvers converge linearly (the
// metric falls by a roughly constant factor per block), so a straight line through log(metric)
// against the block number is the natural model; a metric that is flat or rising gives no estimate.
//
// Platform-neutral and clock-free: the caller supplies each block's duration, so tests can feed
// synthetic sequences.

import type { Progress } from "./common.js";

export interface EtaOptions {
  /** The run stops once the metric is below this (0 or undefined: it runs to maxBlocks). */
  tol?: number;
  /** Block applications at most, in all (undefined: no limit). */
  maxBlocks?: number;
  /** Blocks still applied after the metric passes tol (power iteration's final Rayleigh-Ritz: 1). */
  finalBlocks?: number;
  /** What the metric is, for the message: "residual" gives "(from the residual's rate)". */
  metricName: string;
  /** How many of the latest points the rate is fitted to (default 4; at least 3 are needed). */
  window?: number;
}

export interface Observation {
  /** Block applications completed so far (1 after the first). */
  block: number;
  /** The convergence metric after this block. */
  metric: number;
  /** Wall seconds this block took; undefined when it cost nothing (replayed from a state file). */
  seconds?: number;
}

export interface Eta {
  /** Seconds left, or undefined when unknown. */
  seconds: number | undefined;
  /** Blocks left, or undefined when unknown. */
  blocks: number | undefined;
  /** fixed: the count is known; rate: extrapolated; capped: the extrapolation hits maxBlocks; unknown. */
  basis: "fixed" | "rate" | "capped" | "unknown";
  /** When unknown but maxBlocks is given: the time to reach it. */
  atMostSeconds?: number;
}

const MIN_POINTS = 3;

export class EtaEstimator {
  private readonly points: { block: number; logMetric: number }[] = [];
  private done = 0;
  private totalSeconds = 0;
  private timedBlocks = 0;

  constructor(private readonly opts: EtaOptions) {}

  observe(o: Observation): void {
    this.done = o.block;
    if (o.seconds !== undefined) {
      this.totalSeconds += o.seconds;
      this.timedBlocks++;
    }
    // A zero or non-finite metric has no logarithm; it also breaks the straight line, so start over.
    if (o.metric > 0 && Number.isFinite(o.metric)) this.points.push({ block: o.block, logMetric: Math.log(o.metric) });
    else this.points.length = 0;
    const keep = Math.max(MIN_POINTS, this.opts.window ?? 4);
    if (this.points.length > keep) this.points.splice(0, this.points.length - keep);
  }

  /** Mean wall seconds per block application (undefined before the first timed block). */
  get secondsPerBlock(): number | undefined {
    return this.timedBlocks ? this.totalSeconds / this.timedBlocks : undefined;
  }

  estimate(): Eta {
    const perBlock = this.secondsPerBlock;
    const time = (blocks: number | undefined) => (blocks === undefined || perBlock === undefined ? undefined : blocks * perBlock);
    const { tol, maxBlocks } = this.opts;
    const cap = maxBlocks === undefined ? undefined : Math.max(0, maxBlocks - this.done);
    if (!(tol !== undefined && tol > 0)) {
      // Runs to maxBlocks regardless of the metric.
      return cap === undefined ? { seconds: undefined, blocks: undefined, basis: "unknown" } : { seconds: time(cap), blocks: cap, basis: perBlock === undefined ? "unknown" : "fixed" };
    }
    const untilTol = this.blocksToTol(tol);
    if (untilTol === undefined) return { seconds: undefined, blocks: undefined, basis: "unknown", atMostSeconds: time(cap) };
    const blocks = untilTol + (this.opts.finalBlocks ?? 0);
    if (cap !== undefined && cap <= blocks) return { seconds: time(cap), blocks: cap, basis: perBlock === undefined ? "unknown" : "capped" };
    return { seconds: time(blocks), blocks, basis: perBlock === undefined ? "unknown" : "rate" };
  }

  /** Blocks until the metric falls below tol at the fitted rate; undefined if it is not falling. */
  private blocksToTol(tol: number): number | undefined {
    const pts = this.points;
    const last = pts[pts.length - 1];
    if (last && last.logMetric < Math.log(tol)) return 0;
    if (pts.length < MIN_POINTS) return undefined;
    // Least-squares slope of log(metric) against the block number.
    const mx = pts.reduce((s, p) => s + p.block, 0) / pts.length;
    const my = pts.reduce((s, p) => s + p.logMetric, 0) / pts.length;
    let sxy = 0, sxx = 0;
    for (const p of pts) {
      sxy += (p.block - mx) * (p.logMetric - my);
      sxx += (p.block - mx) ** 2;
    }
    const slope = sxy / sxx;
    if (!(slope < 0)) return undefined;
    // From the fitted line's value at the latest block (less noisy than the last point alone).
    const now = my + slope * (last.block - mx);
    // (less a hair, so an exact 3.0000000001 blocks of rounding is 3)
    return Math.max(1, Math.ceil((now - Math.log(tol)) / -slope - 1e-9));
  }

  /** "ETA 3m 5s", "ETA ~3m 5s (from the residual's rate)", "ETA unknown", ... */
  format(): string {
    const e = this.estimate();
    switch (e.basis) {
      case "fixed":
        return `ETA ${formatDuration(e.seconds!)}`;
      case "capped":
        return `ETA ${formatDuration(e.seconds!)} (to --max-iters)`;
      case "rate":
        return `ETA ~${formatDuration(e.seconds!)} (from the ${this.opts.metricName}'s rate)`;
      default:
        return e.atMostSeconds === undefined ? "ETA unknown" : `ETA unknown (at most ${formatDuration(e.atMostSeconds)}, to --max-iters)`;
    }
  }
}

/** 42s, 3m 5s, 2h 7m. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

/**
 * The ETA of a `power-iter` solve: Lanczos converges on the largest relative residual; power
 * iteration stops on the subspace change and then applies A once more (the final Rayleigh-Ritz
 * block). The command line (src/cli/long-run.ts) and the browser page (src/web/driver.ts) use it.
 */
export function solverEta(method: string, tol: number, maxIters: number | undefined): EtaEstimator {
  // Lanczos converges on the largest relative residual; power iteration stops on the subspace change
  // and then applies A once more (the final Rayleigh-Ritz block). MELBO makes a fixed count.
  if (method === "melbo") return new EtaEstimator({ tol: 0, maxBlocks: maxIters, metricName: "loss" });
  const lanczos = method === "lanczos";
  return new EtaEstimator({
    tol,
    maxBlocks: maxIters === undefined ? undefined : maxIters + (lanczos ? 0 : 1),
    finalBlocks: lanczos ? 0 : 1,
    metricName: lanczos ? "residual" : "subspace change",
  });
}

/** The metric solverEta(method, ...) observes after a block. */
export function solverEtaMetric(method: string, p: Progress): number {
  return method === "lanczos" ? Math.max(...(p.relativeResiduals ?? p.residuals)) : p.subspaceChange;
}

/** A `power-iter` progress line (without the ETA): sigmas, the residual certificate, products. */
export function progressLine(method: string, p: Progress): string {
  const fmt = (xs: number[]) => xs.map((x) => x.toPrecision(5)).join(" ");
  return (
    `iter ${p.iteration}: sigma ${fmt(p.sigmas)} | residual max ${Math.max(...p.residuals).toExponential(2)}` +
    (p.relativeResiduals ? ` (${Math.max(...p.relativeResiduals).toExponential(2)} of sigma_1^2)` : "") +
    (method === "lanczos" ? "" : ` | subspace change ${p.subspaceChange.toExponential(2)}`) +
    (p.products !== undefined ? ` | ${p.products} products` : "")
  );
}
