// MELBO on the batched steering engine (src/melbo/engine-objective.ts, what `jacsteer melbo` runs)
// against the autodiff MelboObjective and trainMelbo (the reference, itself checked against float64
// and PyTorch in melbo.test.ts): the loss and gradient at random points; whole training runs; the
// engine's moveTo bitwise against an engine built at that point; bitwise equal runs for 1, 2 and 3
// threads and for resident and streamed weights.
import { existsSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { MelboObjective, MELBO_ADAMW, defaultRadius, trainMelbo, trainMelboAsync, type MelboPower, type MelboResult } from "../../src/melbo/melbo.js";
import { EngineMelboObjective } from "../../src/melbo/engine-objective.js";
import { SteeringEngine, type WeightMode } from "../../src/engine/steering-engine.js";
import { createParallelGemm, defaultWorkerFile } from "../../src/node/thread-pool.js";
import type { Positions } from "../../src/jacobian/positions.js";
import { writeTempCheckpoint, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadTestModel, maxRelErr } from "../helpers/model.js";
import { randn, rng } from "../helpers/random.js";

const cleanup: TempCheckpoint[] = [];
const engines: SteeringEngine[] = [];
afterAll(async () => {
  for (const e of engines) await e.close();
  cleanup.forEach((c) => c.remove());
});

const S = 0, T = 2;
const prompts = [[3, 1, 4, 1, 5, 9, 2], [2, 7, 1, 8, 2, 8]];
const cases: { name: string; positions: Positions; power: MelboPower }[] = [
  { name: "defaults: last 2 positions, p 2, q 1", positions: 2, power: { p: 2, q: 1 } },
  { name: "weighted list 0,-1,3 and p 3, q 2", positions: { kind: "list", indices: [0, -1, 3], weights: [1.5, 0.5, 1] }, power: { p: 3, q: 2 } },
];

// The engine and the autodiff model round differently (other kernels and summation orders, float32):
// loss and gradient agree to these relative errors; a training run of a few steps stays within
// VEC_TOL (max |difference| / R) of the reference's vectors.
const LOSS_TOL = 5e-6, GRAD_TOL = 1e-5, VEC_TOL = 2e-6; // measured: 4e-7, 7e-7, 2e-7

describe("MELBO on the engine", async () => {
  const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 3 }, { seed: 51 });
  cleanup.push(ck);
  const { model, ckpt, rt } = await loadTestModel(ck.dir);
  const d = ckpt.config.hiddenSize;
  const svs = [randn(rng(1), d, 0.4), randn(rng(2), d, 1.5)];
  const engineAt = async (positions: Positions, at?: Float32Array, opts: { threads?: number; weights?: WeightMode } = {}) => {
    const gemm = opts.threads ? await createParallelGemm(rt, opts.threads, { minParallelFlops: 0 }) : undefined;
    const e = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: S, targetLayer: T, positions, at }, { gemm, weights: opts.weights });
    engines.push(e);
    return e;
  };

  for (const c of cases) {
    describe(c.name, async () => {
      const ref = new MelboObjective(model, prompts, { sourceLayer: S, targetLayer: T, positions: c.positions });
      const obj = new EngineMelboObjective(await engineAt(c.positions), c.power);

      it("loss and gradient match the autodiff objective at random points (and at the points in any order)", async () => {
        for (const sv of [...svs, svs[0]!]) {
          const want = ref.evaluate(sv, c.power);
          const got = await obj.evaluate({ sv: Float64Array.from(sv), gradient: true });
          expect(Math.abs(got.loss - want.loss) / want.loss).toBeLessThan(LOSS_TOL);
          expect(maxRelErr(got.gradient!, want.gradient!)).toBeLessThan(GRAD_TOL);
          const lossOnly = await obj.evaluate({ sv: Float64Array.from(sv), gradient: false });
          expect(lossOnly.gradient).toBeNull();
          expect(lossOnly.loss).toBe(got.loss);
        }
      });

      it("the tolerance can fail: a gradient 3e-5 off is caught", async () => {
        const want = ref.evaluate(svs[1]!, c.power);
        const got = await obj.evaluate({ sv: Float64Array.from(svs[1]!), gradient: true });
        const bad = Float64Array.from(got.gradient!);
        const i = bad.reduce((best, x, k) => (Math.abs(x) > Math.abs(bad[best]!) ? k : best), 0);
        bad[i]! *= 1 + 3 * GRAD_TOL;
        expect(maxRelErr(bad, want.gradient!)).toBeGreaterThan(GRAD_TOL);
      });

      it("source norms (the default radius) match the autodiff model's", () => {
        expect(maxRelErr(obj.sourceNorms(), ref.sourceNorms())).toBeLessThan(LOSS_TOL);
      });
    });
  }

  it("moveTo(sv) gives bitwise the targets and J^T u of an engine built at sv; moveTo(null) returns to sv0", async () => {
    const positions: Positions = { kind: "list", indices: [0, -1, 3], weights: [1.5, 0.5, 1] };
    const moved = await engineAt(positions);
    const zero = await engineAt(positions);
    const at = Float32Array.from(svs[1]!);
    const built = await engineAt(positions, at);
    const U = [randn(rng(5), moved.outputDim), randn(rng(6), moved.outputDim)];
    await moved.moveTo(at);
    expect(moved.targets()).toEqual(built.targets());
    expect(await moved.applyJt(U)).toEqual(await built.applyJt(U));
    expect(await moved.normalProducts(U.map((u) => u.slice(0, d)))).toEqual(await built.normalProducts(U.map((u) => u.slice(0, d))));
    await moved.moveTo(null);
    expect(moved.targets()).toEqual(zero.targets());
    expect(await moved.applyJt(U)).toEqual(await zero.applyJt(U));
  });

  it("S = T: moveTo adds sv to the target rows", async () => {
    const e = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: 1, targetLayer: 1, positions: 2 });
    engines.push(e);
    const t0 = e.targets();
    const sv = Float32Array.from(svs[0]!);
    await e.moveTo(sv);
    e.targets().forEach((t, p) => t.forEach((x, i) => expect(x).toBe(Math.fround(t0[p]![i]! + sv[i % d]!))));
  });

  it("training: the engine's vectors and loss curves follow the autodiff reference's", async () => {
    const c = cases[1]!;
    const ref = new MelboObjective(model, prompts, { sourceLayer: S, targetLayer: T, positions: c.positions });
    const obj = new EngineMelboObjective(await engineAt(c.positions), c.power);
    const R = defaultRadius(ref.sourceNorms());
    const opts = { numVectors: 2, steps: 8, radius: R, seed: 3, ...c.power, adam: { ...MELBO_ADAMW, lr: 0.02 } };
    const want = trainMelbo(ref, opts);
    const got = await trainMelboAsync(d, (r) => obj.evaluate(r), opts);
    expect(obj.evaluations).toBe(2 * 9);
    got.vectors.forEach((v, i) => {
      let worst = 0;
      v.forEach((x, k) => (worst = Math.max(worst, Math.abs(x - want.vectors[i]![k]!))));
      expect(worst / R).toBeLessThan(VEC_TOL);
      expect(maxRelErr(got.losses[i]!, want.losses[i]!)).toBeLessThan(LOSS_TOL);
      expect(Math.abs(got.finalLosses[i]! - want.finalLosses[i]!) / want.finalLosses[i]!).toBeLessThan(LOSS_TOL);
      expect(got.finalLosses[i]).toBeGreaterThan(got.losses[i]![0]!);
    });
  });

  const built = existsSync(defaultWorkerFile());
  describe.runIf(built)("bitwise independent of threads and of resident or streamed weights", () => {
    it("1, 2 and 3 threads, resident and stream: the same vectors and losses", async () => {
      const c = cases[1]!;
      const run = async (threads: number, weights: WeightMode): Promise<MelboResult> => {
        const obj = new EngineMelboObjective(await engineAt(c.positions, undefined, { threads, weights }), c.power);
        return trainMelboAsync(d, (r) => obj.evaluate(r), { numVectors: 2, steps: 5, radius: 3, seed: 9, adam: { ...MELBO_ADAMW, lr: 0.02 } });
      };
      const ref = await run(1, "resident");
      for (const [t, w] of [[2, "resident"], [3, "resident"], [2, "stream"]] as const) {
        const r = await run(t, w);
        expect(r.vectors, `${t} threads, ${w}`).toEqual(ref.vectors);
        expect(r.losses).toEqual(ref.losses);
        expect(r.finalLosses).toEqual(ref.finalLosses);
      }
    });
  });
});
