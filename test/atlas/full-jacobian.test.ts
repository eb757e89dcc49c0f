// The atlas's whole-Jacobian path (src/atlas/full-jacobian.ts):
//   - applyJAtTargets: one JVP's images at every target equal applyJ of each pair's view (float32
//     rounding: the view runs its last layer on the target rows only), and bad target lists are refused;
//   - solveSweep against exact SVDs (f64 Jacobi on J_T materialised from the pair's own applyJ) on an
//     8-layer random checkpoint, its certificate recomputed from the pair's own J^T J products, and a
//     target's numbers the same whether or not other targets of the sweep are skipped;
//   - the cost model and the sweeps that fit a memory budget;
//   - `jacsteer atlas --solver jacobian|auto`: pairs agree with --solver lanczos within what the
//     tolerance allows, auto says what it chose, and a resumed run is bitwise an uninterrupted one.
import { readFileSync, rmSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { randn, rng } from "../helpers/random.js";
import { makeTempDir, writeTempCheckpoint, SMALL_SHAPE } from "../helpers/checkpoints.js";
import { BUNDLED_TINY, jacsteer } from "../generation/fixtures.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { createNodeRuntime } from "../../src/node/runtime.js";
import { SteeringEngine } from "../../src/engine/steering-engine.js";
import { JVP_COST, OWN_COST, jacobianSweeps, solveSweep, sweepCost, type FullJacobianSolution } from "../../src/atlas/full-jacobian.js";
import { svd } from "../../src/linalg/dense.js";
import type { AtlasFile } from "../../src/cli/atlas.js";
import { readVectorSet } from "../../src/cli/verify.js";

const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 8 }, { seed: 3 });
const work = makeTempDir("jacsteer-atlas-jacobian-");
afterAll(() => {
  ck.remove();
  rmSync(work, { recursive: true, force: true });
});
const PROMPTS = [[1, 5, 9, 2, 7, 3], [4, 4, 8, 1, 6, 2, 9]];

async function spanEngine(S: number, T: number) {
  const ckpt = openCheckpoint(ck.dir);
  const rt = await createNodeRuntime();
  const engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, PROMPTS, { sourceLayer: S, targetLayer: T, positions: 3 });
  return { ckpt, engine };
}
const normInf = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe("applyJAtTargets", () => {
  it("one JVP's images at every target are applyJ of each pair's view", async () => {
    const { ckpt, engine } = await spanEngine(1, 7);
    const V = [randn(rng(11), 32), randn(rng(12), 32), randn(rng(13), 32)].map((v) => Float64Array.from(v));
    const targets = [2, 4, 5, 7];
    const images = await engine.applyJAtTargets(V, targets);
    for (const [i, T] of targets.entries()) {
      const own = await engine.restrict(1, T).applyJ(V);
      own.forEach((y, j) => expect(maxAbsDiff(images[i]![j]!, y), `T ${T} vector ${j}`).toBeLessThanOrEqual(1e-5 * normInf(y)));
    }
    // The images differ from target to target (each is copied where the pass crosses its layer).
    expect(maxAbsDiff(images[1]![0]!, images[2]![0]!)).toBeGreaterThan(1e-3 * normInf(images[2]![0]!));
    await expect(engine.applyJAtTargets(V, [4, 2, 7])).rejects.toThrow(/ascend/);
    await expect(engine.applyJAtTargets(V, [1, 7])).rejects.toThrow(/ascend/);
    await expect(engine.applyJAtTargets(V, [2, 4])).rejects.toThrow(/last target must be the engine's target 7/);
    await engine.close();
    ckpt.close();
  }, 120_000);
});

describe("solveSweep", () => {
  it("every target's top-k match an exact SVD; the certificate is the pair's own residual", async () => {
    const S = 0, k = 4, tol = 1e-2;
    const { ckpt, engine } = await spanEngine(S, 7);
    const sweep = [1, 3, 4, 7];
    const sols: FullJacobianSolution[] = [];
    await solveSweep(engine, sweep, { numVectors: k, tol, seed: 0 }, (s) => void sols.push(s));
    expect(sols.map((s) => s.target)).toEqual(sweep);
    for (const sol of sols) {
      const view = engine.restrict(S, sol.target);
      const E = Array.from({ length: 32 }, (_, i) => Float64Array.from({ length: 32 }, (_, j) => (i === j ? 1 : 0)));
      const cols = await view.applyJ(E);
      const exact = svd(Array.from({ length: view.outputDim }, (_, r) => Float64Array.from(cols, (c) => c[r]!)), 32);
      const s1 = exact.values[0]!;
      expect(sol.converged).toBe(true);
      sol.singularValues.forEach((s, i) => expect(Math.abs(s - exact.values[i]!), `T ${sol.target} sigma ${i}`).toBeLessThanOrEqual(2e-5 * s1));
      for (let i = 0; i < k; i++) {
        const gap = (exact.values[i]! - exact.values[i + 1]!) / s1;
        if (gap < 1e-2) continue;
        const c = Math.abs(sol.vectors[i]!.reduce((a, x, j) => a + x * exact.right[i]![j]!, 0));
        expect(1 - c, `T ${sol.target} vector ${i}`).toBeLessThanOrEqual(1e-6 / gap);
      }
      const AX = await view.normalProducts(sol.vectors);
      sol.vectors.forEach((x, i) => {
        const theta = sol.singularValues[i]! ** 2;
        const r = Math.sqrt(x.reduce((a, xj, j) => a + (AX[i]![j]! - theta * xj) ** 2, 0)) / sol.singularValues[0]! ** 2;
        expect(Math.abs(r - sol.relativeResiduals[i]!), `T ${sol.target} vector ${i}`).toBeLessThanOrEqual(1e-5);
        expect(r).toBeLessThanOrEqual(1e-4);
      });
    }
    // A target skipped in the same sweep changes nothing for the others.
    const again: FullJacobianSolution[] = [];
    await solveSweep(engine, sweep, { numVectors: k, tol, seed: 0, skip: new Set([1, 4]) }, (s) => void again.push(s));
    expect(again.map((s) => s.target)).toEqual([3, 7]);
    expect(again.map((s) => s.vectors)).toEqual([sols[1]!.vectors, sols[3]!.vectors]);
    await engine.close();
    ckpt.close();
  }, 240_000);

  it("sweeps fit the budget; the cost model prefers Lanczos for few targets and the whole Jacobian for many", () => {
    expect(jacobianSweeps([1, 2, 3, 4, 5], 10, 25)).toEqual([[1, 2], [3, 4], [5]]);
    expect(jacobianSweeps([1, 2], 10, 5)).toEqual([[1], [2]]);
    // 0.6B shape: d 1024, 100 products per pair; 5 targets after S -> Lanczos, 26 -> Jacobian.
    const few = sweepCost(20, [22, 23, 24, 25, 26], 1024, 8, 64 << 20, 100);
    expect(few.lanczos).toBe(100 * (2 + 3 + 4 + 5 + 6));
    expect(few.jacobian).toBeCloseTo(JVP_COST * 1024 * 6 + OWN_COST * 5 + 4 * 20, 9);
    expect(few.lanczos).toBeLessThan(few.jacobian);
    const many = sweepCost(0, Array.from({ length: 26 }, (_, i) => i + 2), 1024, 8, 64 << 20, 100);
    expect(many.jacobian).toBeLessThan(many.lanczos);
    // Two sweeps when the images of all targets do not fit: the first ends at its own top.
    const split = sweepCost(0, [1, 2, 3, 4], 1024, 8, 100, 100, 200);
    expect(split.jacobian).toBeCloseTo(JVP_COST * 1024 * (2 + 4) + OWN_COST * 4 + 4 * 10, 9);
  });
});

const readSet = (file: string) => readVectorSet(file, "vector file");

describe("jacsteer atlas --solver", () => {
  const TOKENS = ["72,101,108,108,111,44,32,119,111,114,108,100", "84,104,101,32,99,97,116,32,115,97,116"];
  const RUN = ["--model", BUNDLED_TINY, ...TOKENS.flatMap((t) => ["--tokens", t]), "--num-vectors", "3", "--positions", "3", "--sources", "0..1", "--targets", "1..3"];
  const load = (dir: string): AtlasFile => JSON.parse(readFileSync(join(dir, "atlas.json"), "utf8"));

  it("jacobian agrees with lanczos to the tolerance; auto says what it chose; resuming is bitwise", () => {
    const lan = join(work, "lanczos"), jac = join(work, "jacobian"), auto = join(work, "auto");
    for (const [dir, solver] of [[lan, "lanczos"], [jac, "jacobian"]]) {
      const r = jacsteer(["atlas", ...RUN, "--out-dir", dir, "--solver", solver, "--tol", "1e-3", "--quiet"]);
      expect(r.code, r.stderr).toBe(0);
    }
    const a = load(lan), b = load(jac);
    expect(b.pairs.map((p) => p.solver)).toEqual(["jacobian", "jacobian", "jacobian", "jacobian", "jacobian"]);
    b.pairs.forEach((p, i) => {
      const q = a.pairs[i]!;
      const s1 = p.singular_values[0]!;
      // Lanczos's values are Ritz values: below the exact ones, by at most tol * sigma_1^2 in sigma^2.
      p.singular_values.forEach((s, j) => {
        expect(s * s - q.singular_values[j]! ** 2, `S ${p.source} T ${p.target} sigma ${j}`).toBeGreaterThanOrEqual(-1e-5 * s1 * s1);
        expect(s * s - q.singular_values[j]! ** 2).toBeLessThanOrEqual(1e-3 * s1 * s1);
      });
      expect(Math.max(...p.relative_residuals)).toBeLessThanOrEqual(1e-4);
      expect(p.products).toBe(64); // the hidden size: one JVP per unit vector
    });

    // auto on 8 layers: the first pair of S 0 by Lanczos, the six others cheaper as one whole Jacobian
    // (bitwise the jacobian run's: the same JVPs); S 5 has two targets and keeps Lanczos.
    const small = ["--model", ck.dir, "--tokens", "1,5,9,2,7,3", "--tokens", "4,4,8,1,6,2,9", "--num-vectors", "3", "--positions", "3", "--sources", "0,5", "--targets", "1..7", "--tol", "1e-3"];
    const r = jacsteer(["atlas", ...small, "--out-dir", auto]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/atlas: S 0: the whole Jacobian for T 2\.\.7 \(about [\d,]+ layer-products against [\d,]+ layer-products for Lanczos per pair at the first pair's \d+ products\)/);
    expect(r.stderr).toMatch(/atlas: S 5: block Lanczos per pair/);
    const c = load(auto);
    expect(c.pairs.map((p) => `${p.source}-${p.target}-${p.solver}`)).toEqual(["0-1-lanczos", ...[2, 3, 4, 5, 6, 7].map((t) => `0-${t}-jacobian`), "5-6-lanczos", "5-7-lanczos"]);
    const autoJac = join(work, "auto-jacobian");
    expect(jacsteer(["atlas", ...small, "--out-dir", autoJac, "--solver", "jacobian", "--quiet"]).code).toBe(0);
    const e = load(autoJac);
    for (let i = 1; i <= 6; i++) expect(c.pairs[i]!.singular_values).toEqual(e.pairs[i]!.singular_values);

    // Resume: the middle target of the S 0 sweep and the last pair removed.
    const before = ["pair-S00-T02", "pair-S00-T03", "pair-S01-T03"].map((p) => readSet(join(jac, `${p}.safetensors`)).vectors);
    unlinkSync(join(jac, "pair-S00-T02.safetensors"));
    unlinkSync(join(jac, "pair-S01-T03.safetensors"));
    const again = jacsteer(["atlas", ...RUN, "--out-dir", jac, "--solver", "jacobian", "--tol", "1e-3"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/2 computed, 3 read back/);
    expect(["pair-S00-T02", "pair-S00-T03", "pair-S01-T03"].map((p) => readSet(join(jac, `${p}.safetensors`)).vectors)).toEqual(before);
    const strip = (f: AtlasFile) => f.pairs.map((x) => ({ ...x, seconds: null }));
    expect(strip(load(jac))).toEqual(strip(b));

    // Bitwise the same on 1 thread (the default is every core).
    const one = join(work, "one-thread");
    const r1 = jacsteer(["atlas", ...RUN, "--out-dir", one, "--solver", "jacobian", "--tol", "1e-3", "--threads", "1", "--quiet"]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(strip(load(one))).toEqual(strip(b));
    expect(readSet(join(one, "pair-S00-T03.safetensors")).vectors).toEqual(before[1]);
  }, 240_000);
});
