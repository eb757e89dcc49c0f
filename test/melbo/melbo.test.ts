// MELBO (src/melbo/): the objective and its autodiff gradient against the float64 reference model
// (loss directly, gradient by central finite differences) and against PyTorch on the same checkpoint
// (test/python/melbo_loss.py, loss and torch.autograd gradient); AdamW-amsgrad against its first-step
// closed form and against torch.optim.AdamW; training: orthogonal vectors of norm R, loss going up.
import { afterAll, describe, expect, it } from "vitest";
import { MelboObjective, trainMelbo, AmsgradAdamW, MELBO_ADAMW, defaultRadius, type MelboPower } from "../../src/melbo/melbo.js";
import { resolvePositions, type Positions } from "../../src/jacobian/positions.js";
import { writeTempCheckpoint, SMALL_SHAPE, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadRefWeights, refHiddenStates, type RefWeights } from "../helpers/qwen3-reference.js";
import { loadTestModel, maxRelErr } from "../helpers/model.js";
import { randn, rng } from "../helpers/random.js";
import { itWithTorch, runPython } from "../helpers/torch.js";

const cleanup: TempCheckpoint[] = [];
afterAll(() => cleanup.forEach((c) => c.remove()));

const S = 0, T = 2;
const prompts = [[3, 1, 4, 1, 5, 9, 2], [2, 7, 1, 8, 2, 8]];

/** The objective in float64, from the reference forward (independent of the wasm model and autodiff). */
function refLoss(ref: RefWeights, sv: ArrayLike<number>, positions: Positions, { p, q }: MelboPower): number {
  const d = ref.cfg.hiddenSize;
  let total = 0;
  prompts.forEach((tokens, i) => {
    const { rows, weights } = resolvePositions(positions, tokens.length, `prompt ${i + 1}`);
    const h0 = refHiddenStates(ref, tokens, T, { layer: S, sv: new Float64Array(d) })[T + 1];
    const h1 = refHiddenStates(ref, tokens, T, { layer: S, sv })[T + 1];
    rows.forEach((r, k) => {
      const w = weights ? weights[k] : 1;
      let s = 0;
      for (let j = 0; j < d; j++) s += (w * (h1[r][j] - h0[r][j])) ** 2;
      total += Math.pow(Math.sqrt(s), p);
    });
  });
  return Math.pow(total, 1 / q);
}

const cases: { name: string; positions: Positions; power: MelboPower }[] = [
  { name: "defaults: last 2 positions, p 2, q 1", positions: 2, power: { p: 2, q: 1 } },
  { name: "weighted list 0,-1,3 and p 3, q 2", positions: { kind: "list", indices: [0, -1, 3], weights: [1.5, 0.5, 1] }, power: { p: 3, q: 2 } },
];

describe("MELBO objective", async () => {
  const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 3 }, { seed: 51 });
  cleanup.push(ck);
  const { model, ckpt } = await loadTestModel(ck.dir);
  const ref = loadRefWeights(ckpt.config, ckpt.tensors);
  const d = ckpt.config.hiddenSize;
  const svs = [randn(rng(1), d, 0.4), randn(rng(2), d, 1.5)];

  for (const c of cases) {
    describe(c.name, () => {
      const obj = new MelboObjective(model, prompts, { sourceLayer: S, targetLayer: T, positions: c.positions });

      it("loss matches the float64 reference; gradient matches its central finite differences", () => {
        for (const sv of svs) {
          const { loss, gradient } = obj.evaluate(sv, c.power);
          const expected = refLoss(ref, sv, c.positions, c.power);
          expect(Math.abs(loss - expected) / expected).toBeLessThan(1e-5);
          const h = 1e-4;
          const fd = Array.from({ length: d }, (_, j) => {
            const plus = Float64Array.from(sv), minus = Float64Array.from(sv);
            plus[j] += h;
            minus[j] -= h;
            return (refLoss(ref, plus, c.positions, c.power) - refLoss(ref, minus, c.positions, c.power)) / (2 * h);
          });
          expect(maxRelErr(gradient!, fd)).toBeLessThan(2e-5);
        }
      });

      itWithTorch("loss and gradient match PyTorch (reference/qwen3_minimal.py, float64) on the same checkpoint", () => {
        const rows = prompts.map((t, i) => resolvePositions(c.positions, t.length, `prompt ${i + 1}`).rows);
        const weights = typeof c.positions === "number" ? null : c.positions.weights ?? null;
        const out = JSON.parse(
          runPython(["test/python/melbo_loss.py"], {
            input: JSON.stringify({ model: ck.dir, prompts, source_layer: S, target_layer: T, rows, weights, p: c.power.p, q: c.power.q, svs: svs.map((v) => Array.from(v)) }),
          }),
        ) as { losses: number[]; gradients: number[][] };
        svs.forEach((sv, i) => {
          const { loss, gradient } = obj.evaluate(sv, c.power);
          expect(Math.abs(loss - out.losses[i]) / out.losses[i]).toBeLessThan(1e-5);
          expect(maxRelErr(gradient!, out.gradients[i])).toBeLessThan(2e-5);
        });
      });
    });
  }

  it("zero steering has zero loss; S = T gives the constant n R^p on the sphere", () => {
    const obj = new MelboObjective(model, prompts, { sourceLayer: S, targetLayer: T, positions: 2 });
    expect(obj.evaluate(new Float32Array(d), { p: 2, q: 1 }, false).loss).toBe(0);
    const same = new MelboObjective(model, prompts, { sourceLayer: 1, targetLayer: 1, positions: 3 });
    const sv = randn(rng(4), d);
    const R2 = sv.reduce((s, x) => s + x * x, 0);
    expect(Math.abs(same.evaluate(sv, { p: 2, q: 1 }).loss - 2 * 3 * R2) / R2).toBeLessThan(1e-5);
  });

  it("errors name the flag", () => {
    expect(() => new MelboObjective(model, prompts, { sourceLayer: 2, targetLayer: 1, positions: 2 })).toThrow(/--source-layer 2 is after --target-layer 1/);
    expect(() => new MelboObjective(model, prompts, { sourceLayer: 0, targetLayer: 2, positions: 7 })).toThrow(/--positions 7 needs at least 7 tokens, but prompt 2 has 6/);
    expect(() => new MelboObjective(model, prompts, { sourceLayer: 0, targetLayer: 2, positions: { kind: "list", indices: [6] } })).toThrow(/--position-list 6: position 6 is out of range for prompt 2/);
  });

  it("training: n orthogonal vectors of norm R, each one's loss rising over the steps", () => {
    const obj = new MelboObjective(model, prompts, { sourceLayer: S, targetLayer: T, positions: 2 });
    const R = defaultRadius(obj.sourceNorms());
    const res = trainMelbo(obj, { numVectors: 3, steps: 40, radius: R, seed: 7, p: 2, q: 1, adam: { ...MELBO_ADAMW, lr: 0.02 } });
    expect(res.vectors.length).toBe(3);
    res.vectors.forEach((v, i) => {
      expect(Math.abs(Math.hypot(...v) - R) / R).toBeLessThan(1e-12);
      // and as float32, as written to the file
      const f = Float32Array.from(v);
      for (let j = 0; j < i; j++) {
        const g = Float32Array.from(res.vectors[j]);
        expect(Math.abs(f.reduce((s, x, k) => s + x * g[k], 0)) / (R * R)).toBeLessThan(1e-6);
      }
      const curve = res.losses[i];
      expect(curve.length).toBe(40);
      expect(res.finalLosses[i]).toBeGreaterThan(1.2 * curve[0]);
      const rises = curve.slice(1).filter((l, t) => l >= curve[t]).length;
      expect(rises / (curve.length - 1)).toBeGreaterThan(0.9);
      // the final loss is the objective at the returned vector
      expect(Math.abs(res.finalLosses[i] - refLoss(ref, v, 2, { p: 2, q: 1 })) / res.finalLosses[i]).toBeLessThan(1e-4);
    });
    // The same seed reproduces the run.
    const again = trainMelbo(obj, { numVectors: 1, steps: 5, radius: R, seed: 7, p: 2, q: 1, adam: { ...MELBO_ADAMW, lr: 0.02 } });
    const first = trainMelbo(obj, { numVectors: 1, steps: 5, radius: R, seed: 7, p: 2, q: 1, adam: { ...MELBO_ADAMW, lr: 0.02 } });
    expect(Array.from(again.vectors[0])).toEqual(Array.from(first.vectors[0]));
  });

  it("the default radius is half the median layer-S norm over all positions (float64 reference)", () => {
    const obj = new MelboObjective(model, prompts, { sourceLayer: S, targetLayer: T, positions: 2 });
    const norms = prompts.flatMap((t) => refHiddenStates(ref, t, S)[S + 1].map((row) => Math.hypot(...row))).sort((a, b) => a - b);
    const k = norms.length >> 1;
    const m = norms.length % 2 ? norms[k] : (norms[k - 1] + norms[k]) / 2;
    expect(Math.abs(defaultRadius(obj.sourceNorms()) - 0.5 * m) / m).toBeLessThan(1e-5);
  });
});

describe("AdamW with amsgrad", () => {
  it("first step moves every coordinate by lr against the gradient's sign (bias correction), and decays weights", () => {
    const opt = new AmsgradAdamW(3, { ...MELBO_ADAMW, lr: 0.01, weightDecay: 0.5 });
    const x = Float64Array.of(1, -2, 3);
    opt.step(x, [4, -0.5, 1e-3]);
    const decay = 1 - 0.01 * 0.5;
    // m / (sqrt(vmax) + eps) after bias correction = g / (|g| + eps)
    const g = [4, -0.5, 1e-3];
    const expected = [1, -2, 3].map((x0, i) => x0 * decay - (0.01 * g[i]) / (Math.abs(g[i]) + 1e-8));
    x.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 12));
  });

  itWithTorch("matches torch.optim.AdamW(amsgrad=True) step by step", () => {
    const r = rng(11);
    const d = 6, steps = 12;
    const x0 = Array.from(randn(r, d));
    // Gradients that shrink: amsgrad's running max of v then differs from v.
    const grads = Array.from({ length: steps }, (_, t) => Array.from(randn(r, d), (g) => g * Math.pow(0.6, t)));
    const cfg = { lr: 0.05, betas: [0.9, 0.98], eps: 1e-8, weight_decay: 0.1 };
    const out = JSON.parse(runPython(["test/python/melbo_adamw.py"], { input: JSON.stringify({ x0, grads, ...cfg }) })) as { xs: number[][] };
    const opt = new AmsgradAdamW(d, { lr: cfg.lr, beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: cfg.weight_decay });
    const x = Float64Array.from(x0);
    grads.forEach((g, t) => {
      opt.step(x, g);
      expect(maxRelErr(x, out.xs[t])).toBeLessThan(1e-12);
    });
  });
});
