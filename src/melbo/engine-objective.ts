// MELBO's objective (objective.ts states it) on the batched steering engine instead of the autodiff
// model: what `jacsteer melbo` runs. At each point sv:
//   - engine.moveTo(sv): layers S+1..T forward at sv (all prompts stacked: one matrix product per
//     projection over every prompt's rows), from layer S's output, which the engine computed once;
//   - the displacement of each target row, diff_t = w_t (h_t(sv) - h_t(0)), and its share of the loss
//     ||diff_t||^p, on the host in float64;
//   - the gradient: the cotangent dS/d(target_t) = p ||diff_t||^(p-2) diff_t through engine.applyJt,
//     the same batched VJP (decoder-layer.ts layerVjp) power iteration's products use, now at sv;
//     then the outer power by the chain rule, as objective.ts does.
// The autodiff MelboObjective stays the reference the tests compare against.
import type { SteeringEngine } from "../engine/steering-engine.js";
import type { MelboAnswer, MelboRequest } from "./melbo.js";
import type { MelboPower } from "./objective.js";

export class EngineMelboObjective {
  readonly dim: number;
  /** Unsteered target rows (weights applied) of all prompts, concatenated as the engine's J v. */
  private readonly target0: Float32Array;
  /** Loss (and gradient) evaluations so far, for reporting. */
  evaluations = 0;

  /** `engine` must be at sv0 = 0 (created without `at`); the objective moves it from then on. */
  constructor(
    readonly engine: SteeringEngine,
    readonly power: MelboPower,
  ) {
    if (engine.site.at) throw new Error("EngineMelboObjective: the engine must start at sv0 = 0 (no `at`)");
    this.dim = engine.inputDim;
    const parts = engine.targets();
    this.target0 = new Float32Array(engine.outputDim);
    let off = 0;
    for (const t of parts) {
      this.target0.set(t, off);
      off += t.length;
    }
  }

  /** Norms of the unsteered layer-S output at every position of every prompt: the scale for R. */
  sourceNorms(): number[] {
    return this.engine.sourceNorms();
  }

  /** L(sv) and, when asked, dL/dsv (float64). */
  async evaluate({ sv, gradient }: MelboRequest): Promise<MelboAnswer> {
    const { p, q } = this.power;
    const e = this.engine, d = this.dim;
    await e.moveTo(sv);
    const parts = e.targets();
    const u = gradient ? new Float64Array(e.outputDim) : null;
    let total = 0, off = 0;
    for (const h of parts) {
      for (let r = 0; r < h.length; r += d, off += d) {
        let s = 0;
        for (let j = 0; j < d; j++) {
          const x = h[r + j]! - this.target0[off + j]!;
          s += x * x;
        }
        total += Math.pow(s, p / 2);
        // d ||diff||^p / d diff = p ||diff||^(p-2) diff; a row that did not move contributes 0
        if (u && s > 0) {
          const c = p * Math.pow(s, p / 2 - 1);
          for (let j = 0; j < d; j++) u[off + j] = c * (h[r + j]! - this.target0[off + j]!);
        }
      }
    }
    this.evaluations++;
    const loss = Math.pow(total, 1 / q);
    if (!u) return { loss, gradient: null };
    const [g] = await e.applyJt([u]);
    // Chain rule through the outer power; at total = 0 (sv with no effect) the slope is taken as 0.
    const outer = total > 0 ? (1 / q) * Math.pow(total, 1 / q - 1) : q === 1 ? 1 : 0;
    for (let i = 0; i < d; i++) g![i] *= outer;
    return { loss, gradient: g! };
  }
}
