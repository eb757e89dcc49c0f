// SteeringEngine.steered (src/engine/steered-pass.ts): the nonlinear pass at steered points and the
// VJP there. Against the autodiff SteeringJacobian built AT each point (its targets and J^T u, an
// independent path); at zero points bitwise the engine's own targets() and applyJt; bitwise the same
// for any chunking of the points and for 1 or 2 threads.
import { existsSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { SteeringJacobian, type SteeringSite } from "../../src/jacobian/steering-jacobian.js";
import { SteeringEngine } from "../../src/engine/steering-engine.js";
import { createParallelGemm, defaultWorkerFile } from "../../src/node/thread-pool.js";
import { SMALL_SHAPE, writeTempCheckpoint, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadTestModel, maxRelErr } from "../helpers/model.js";
import { randn, rng } from "../helpers/random.js";

const cleanup: TempCheckpoint[] = [];
const engines: SteeringEngine[] = [];
afterAll(async () => {
  for (const e of engines) await e.close();
  cleanup.forEach((c) => c.remove());
});

const TOL = 2e-5;

const cases: { name: string; shape: typeof SMALL_SHAPE; dtype: "F32" | "BF16"; prompts: number[][]; site: (d: number) => SteeringSite }[] = [
  {
    name: "two prompts, S=0 T=1 K=3",
    shape: SMALL_SHAPE,
    dtype: "F32",
    prompts: [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2]],
    site: () => ({ sourceLayer: 0, targetLayer: 1, positions: 3 }),
  },
  {
    name: "BF16, GQA 4, 4 layers, S=0 T=3, sv0 != 0, weighted list",
    shape: { ...SMALL_SHAPE, hidden_size: 33, intermediate_size: 37, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 10, num_hidden_layers: 4 },
    dtype: "BF16",
    prompts: [[1, 2, 3, 4, 5, 6, 7], [11, 12, 13, 14]],
    site: (d) => ({ sourceLayer: 0, targetLayer: 3, positions: { kind: "list", indices: [0, -1, 2], weights: [0.5, 2, 1] }, at: Float32Array.from(randn(rng(77), d), (x) => 0.3 * x) }),
  },
  {
    name: "S = T",
    shape: SMALL_SHAPE,
    dtype: "F32",
    prompts: [[5, 4, 3, 2, 1], [9, 9, 8]],
    site: () => ({ sourceLayer: 1, targetLayer: 1, positions: { kind: "last", count: 2, weights: [3, 0.25] } }),
  },
];

function block(seed: number, n: number, len: number, scale = 1): Float32Array[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Float32Array.from(randn(r, len), (x) => scale * x));
}

describe("SteeringEngine.steered against the autodiff model at each point", () => {
  for (const c of cases) {
    describe(c.name, async () => {
      const ck = writeTempCheckpoint(c.shape, { seed: 5, dtype: c.dtype });
      cleanup.push(ck);
      const { rt, model, ckpt } = await loadTestModel(ck.dir, { head: false });
      const site = c.site(ckpt.config.hiddenSize);
      const engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, c.prompts, site);
      engines.push(engine);
      const d = engine.inputDim;
      const points = block(1, 3, d, 0.7);
      const U = block(2, 3, engine.outputDim);

      it("targets and J(sv0 + p)^T u match the reference built at sv0 + p", async () => {
        const got = await engine.steered(points, U);
        points.forEach((p, j) => {
          const at = Float32Array.from(p, (x, i) => x + (site.at?.[i] ?? 0));
          const J = new SteeringJacobian(model, c.prompts, { ...site, at });
          const want = J.targets();
          const flat = new Float32Array(engine.outputDim);
          let o = 0;
          for (const t of want) flat.set(t, o), (o += t.length);
          expect(maxRelErr(got.targets[j]!, flat)).toBeLessThan(TOL);
          expect(maxRelErr(got.grads![j]!, J.applyTransposed(U[j]!))).toBeLessThan(TOL);
        });
      });

      it("a wrong answer is caught: the targets at a point differ from those at sv0", async () => {
        const got = await engine.steered(points);
        const at0 = engine.targets();
        const flat = new Float32Array(engine.outputDim);
        let o = 0;
        for (const t of at0) flat.set(t, o), (o += t.length);
        expect(maxRelErr(got.targets[0]!, flat)).toBeGreaterThan(1e-3);
      });

      it("at zero points: bitwise the engine's targets() and applyJt", async () => {
        const zeros = Array.from({ length: 3 }, () => new Float32Array(d));
        const got = await engine.steered(zeros, U);
        const flat = new Float32Array(engine.outputDim);
        let o = 0;
        for (const t of engine.targets()) flat.set(t, o), (o += t.length);
        got.targets.forEach((t) => expect(t).toEqual(flat));
        expect(got.grads).toEqual(await engine.applyJt(U));
      });

      it("bitwise the same in chunks of one point, and forward-only targets equal those of the VJP pass", async () => {
        const whole = await engine.steered(points, U);
        const ones = await engine.steered(points, U, { budgetBytes: 1 });
        expect(ones).toEqual(whole);
        const fwd = await engine.steered(points);
        expect(fwd.targets).toEqual(whole.targets);
        expect((await engine.steered(points, undefined, { budgetBytes: 1 })).targets).toEqual(whole.targets);
      });
    });
  }
});

describe.runIf(existsSync(defaultWorkerFile()))("steered: bitwise the same on 1 and 2 threads", async () => {
  const c = cases[1]!;
  const ck = writeTempCheckpoint(c.shape, { seed: 8, dtype: c.dtype });
  cleanup.push(ck);
  const { rt, ckpt } = await loadTestModel(ck.dir, { head: false });
  const site = c.site(ckpt.config.hiddenSize);
  const byThreads: SteeringEngine[] = [];
  for (const t of [1, 2]) {
    const gemm = await createParallelGemm(rt, t, { minParallelFlops: 0 });
    const e = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, c.prompts, site, { gemm });
    engines.push(e);
    byThreads.push(e);
  }
  it("targets and gradients", async () => {
    const points = block(3, 4, ckpt.config.hiddenSize, 0.5);
    const U = block(4, 4, byThreads[0]!.outputDim);
    expect(await byThreads[1]!.steered(points, U)).toEqual(await byThreads[0]!.steered(points, U));
  });
});
