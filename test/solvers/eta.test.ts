// The ETA from synthetic progress: known counts, linear convergence on a log scale, flat or rising
// metrics, the --max-iters cap, replayed blocks that cost no time.
import { describe, expect, it } from "vitest";
import { EtaEstimator, formatDuration } from "../../src/solvers/eta.js";

/** Feed blocks 1..count with metric start * rate^(block - 1), each taking `seconds`. */
function feed(eta: EtaEstimator, count: number, start: number, rate: number, seconds: number | null = 2): void {
  for (let b = 1; b <= count; b++) eta.observe({ block: b, metric: start * rate ** (b - 1), seconds: seconds ?? undefined });
}

describe("EtaEstimator", () => {
  it("a fixed number of blocks (tol 0): remaining blocks times the mean block time", () => {
    const eta = new EtaEstimator({ tol: 0, maxBlocks: 100, metricName: "residual" });
    eta.observe({ block: 1, metric: 1, seconds: 3 });
    eta.observe({ block: 2, metric: 1, seconds: 5 });
    expect(eta.estimate()).toEqual({ seconds: 98 * 4, blocks: 98, basis: "fixed" });
    expect(eta.format()).toBe("ETA 6m 32s");
  });

  it("to a tolerance: extrapolates the metric's fall on a log scale", () => {
    // 1e-1 falling 10x per block: blocks 1..4 reach 1e-4; 1e-7 is 3 more blocks away.
    const eta = new EtaEstimator({ tol: 1e-7, metricName: "residual" });
    feed(eta, 4, 1e-1, 0.1, 10);
    const e = eta.estimate();
    expect(e.basis).toBe("rate");
    expect(e.blocks).toBe(3);
    expect(e.seconds).toBeCloseTo(30, 9);
    expect(eta.format()).toBe("ETA ~30s (from the residual's rate)");
  });

  it("counts power iteration's final block, and gives 1 block once the metric is below tol", () => {
    const eta = new EtaEstimator({ tol: 1e-3, maxBlocks: 101, finalBlocks: 1, metricName: "subspace change" });
    feed(eta, 3, 1e-1, 0.5, 1);
    // log2(0.025 / 0.001) = 4.64: 5 more iterations, then the final block.
    expect(eta.estimate().blocks).toBe(6);
    expect(eta.format()).toBe("ETA ~6s (from the subspace change's rate)");
    eta.observe({ block: 4, metric: 5e-4, seconds: 1 });
    expect(eta.estimate().blocks).toBe(1);
  });

  it("is unknown with fewer than 3 points, or when the metric is flat or rising", () => {
    const few = new EtaEstimator({ tol: 1e-5, metricName: "residual" });
    feed(few, 2, 1, 0.1);
    expect(few.estimate().basis).toBe("unknown");
    expect(few.format()).toBe("ETA unknown");
    const flat = new EtaEstimator({ tol: 1e-5, metricName: "residual" });
    feed(flat, 6, 1, 1);
    expect(flat.format()).toBe("ETA unknown");
    const rising = new EtaEstimator({ tol: 1e-5, metricName: "residual" });
    feed(rising, 6, 1e-3, 1.5);
    expect(rising.estimate().seconds).toBeUndefined();
  });

  it("says how long --max-iters allows when the rate is unknown, and caps the extrapolation by it", () => {
    const unknown = new EtaEstimator({ tol: 1e-5, maxBlocks: 10, metricName: "residual" });
    feed(unknown, 2, 1, 1, 6);
    expect(unknown.format()).toBe("ETA unknown (at most 48s, to --max-iters)");
    const capped = new EtaEstimator({ tol: 1e-12, maxBlocks: 10, metricName: "residual" });
    feed(capped, 4, 1, 0.5, 6); // 2^-40 is ~37 blocks away: --max-iters comes first
    expect(capped.estimate()).toEqual({ seconds: 36, blocks: 6, basis: "capped" });
    expect(capped.format()).toBe("ETA 36s (to --max-iters)");
  });

  it("fits only the last few points: a change of rate shows within a window", () => {
    const eta = new EtaEstimator({ tol: 1e-10, metricName: "residual", window: 4 });
    feed(eta, 10, 1, 1, 1); // flat for 10 blocks
    for (let b = 11; b <= 14; b++) eta.observe({ block: b, metric: 10 ** -(b - 10), seconds: 1 });
    // Now falling 10x per block from 1e-4 at block 14: 6 more blocks.
    expect(eta.estimate().blocks).toBe(6);
  });

  it("replayed blocks (no seconds) feed the rate but not the time per block", () => {
    const eta = new EtaEstimator({ tol: 1e-8, metricName: "residual" });
    feed(eta, 5, 1, 0.1, null);
    expect(eta.secondsPerBlock).toBeUndefined();
    expect(eta.format()).toBe("ETA unknown");
    eta.observe({ block: 6, metric: 1e-5, seconds: 20 });
    expect(eta.estimate()).toMatchObject({ blocks: 3, seconds: 60, basis: "rate" });
  });

  it("a zero metric restarts the fit instead of taking a logarithm of 0", () => {
    const eta = new EtaEstimator({ tol: 1e-8, metricName: "subspace change" });
    feed(eta, 4, 1, 0.1);
    eta.observe({ block: 5, metric: 0, seconds: 2 });
    expect(eta.format()).toBe("ETA unknown");
  });
});

describe("formatDuration", () => {
  it("seconds, minutes and seconds, hours and minutes", () => {
    expect(formatDuration(0.2)).toBe("0s");
    expect(formatDuration(59.4)).toBe("59s");
    expect(formatDuration(65)).toBe("1m 5s");
    expect(formatDuration(3599)).toBe("59m 59s");
    expect(formatDuration(2 * 3600 + 7 * 60 + 10)).toBe("2h 7m");
  });
});
