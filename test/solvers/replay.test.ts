// Resuming a solver from its replay log: interrupted after k blocks and resumed, both solvers give a
// result bitwise identical to an uninterrupted run (with a small thick-restart basis, so the resumed
// Lanczos run crosses restarts); a log from another run is refused at the first block that differs.
import { describe, expect, it } from "vitest";
import { blockLanczosAsync } from "../../src/solvers/block-lanczos.js";
import { blockPowerIterationAsync } from "../../src/solvers/block-power.js";
import { blockOperatorOf, type BlockOperator, type SolveResult } from "../../src/solvers/common.js";
import { fingerprintVectors, ReplayMismatchError, resumableOperator, type ReplayBlock } from "../../src/solvers/replay.js";
import { explicitJ, normalOf } from "./helpers.js";

const J = explicitJ(60, 40, [10, 9, 8.5, 8, 6, 5, 4.5, 4, 3, 2.5, 2, 1.5, 1, 0.5], 7);
const A = blockOperatorOf(normalOf(J));

type Solve = (op: BlockOperator, seed: number) => Promise<SolveResult>;
const SOLVERS: Record<string, Solve> = {
  lanczos: (op, seed) => blockLanczosAsync(op, { numVectors: 3, tol: 1e-12, seed, maxBasis: 12, maxIters: 40 }),
  power: (op, seed) => blockPowerIterationAsync(op, { numVectors: 3, tol: 1e-9, seed, maxIters: 60 }),
};

class Interrupted extends Error {}

/** An operator that stops the run after `k` blocks (like a killed process). */
function stoppingAfter(k: number): BlockOperator {
  let count = 0;
  return {
    dim: A.dim,
    applyBlock(V) {
      if (count++ === k) throw new Interrupted();
      return A.applyBlock(V);
    },
  };
}

function bits(r: SolveResult): string {
  const f64 = (xs: ArrayLike<number>) => Array.from(new Uint32Array(Float64Array.from(xs).buffer)).join(",");
  return JSON.stringify({ v: r.vectors.map(f64), s: f64(r.singularValues), r: f64(r.residuals), it: r.iterations, p: r.products, c: r.converged });
}

describe("resumableOperator", () => {
  for (const [name, solve] of Object.entries(SOLVERS)) {
    it(`${name}: interrupted after k blocks and resumed gives a bitwise identical result`, async () => {
      const clean = await solve(A, 3);
      expect(clean.iterations).toBeGreaterThan(8);
      for (const k of [0, 1, 5, clean.iterations - 1]) {
        // The saved log is what onBlock saw last: the whole log after each live block.
        let saved: readonly ReplayBlock[] = [];
        const first = resumableOperator(stoppingAfter(k), { onBlock: (log) => void (saved = log.slice()) });
        await expect(solve(first, 3)).rejects.toBeInstanceOf(Interrupted);
        expect(saved.length).toBe(k);
        let live = 0;
        const counting: BlockOperator = { dim: A.dim, applyBlock: (V) => (live++, A.applyBlock(V)) };
        const resumed = resumableOperator(counting, { replay: saved });
        expect(bits(await solve(resumed, 3))).toBe(bits(clean));
        expect(resumed.log.length).toBe(k + live); // the replayed blocks cost no product
      }
    });

    it(`${name}: a complete log replays the whole run without a product`, async () => {
      const first = resumableOperator(A);
      const clean = await solve(first, 5);
      const never: BlockOperator = { dim: A.dim, applyBlock: () => { throw new Error("no product expected"); } };
      expect(bits(await solve(resumableOperator(never, { replay: first.log }), 5))).toBe(bits(clean));
    });

    it(`${name}: a log from another start is refused at its first block`, async () => {
      const other = resumableOperator(A);
      await solve(other, 1);
      const err = await solve(resumableOperator(A, { replay: other.log }), 2).catch((e) => e);
      expect(err).toBeInstanceOf(ReplayMismatchError);
      expect(err.block).toBe(0);
      expect(err.message).toMatch(/block 1 of the replay was computed from other vectors/);
    });
  }

  it("the log keeps its own copies: a solver writing into the arrays it got cannot change the log", async () => {
    const op = resumableOperator(A);
    const V = [Float64Array.from({ length: A.dim }, (_, i) => i)];
    const W = await op.applyBlock(V);
    const before = fingerprintVectors(op.log[0].products);
    W[0].fill(0);
    expect(fingerprintVectors(op.log[0].products)).toBe(before);
    const replayed = await resumableOperator(A, { replay: op.log }).applyBlock(V);
    replayed[0].fill(0);
    expect(fingerprintVectors(op.log[0].products)).toBe(before);
  });
});

describe("fingerprintVectors", () => {
  it("tells apart blocks that differ in one bit, in order, count or length", () => {
    const v = Float64Array.from({ length: 50 }, (_, i) => Math.sin(i));
    const w = Float64Array.from(v);
    const bitsW = new Uint32Array(w.buffer);
    bitsW[20] ^= 1; // the lowest mantissa bit of one entry
    const prints = [[v], [w], [v, w], [w, v], [v, v], [v.subarray(0, 49)], [], [new Float64Array(0)]].map(fingerprintVectors);
    expect(new Set(prints).size).toBe(prints.length);
    expect(fingerprintVectors([Float64Array.from(v)])).toBe(prints[0]);
    expect(prints[0]).toMatch(/^[0-9a-f]{32}$/);
  });
});
