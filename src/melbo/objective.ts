// MELBO's objective (Mack & Turner, "Mechanistically eliciting latent behaviors"): how far a steering
// vector sv, added at layer S's output at every position (CONTRACT.md section 1), moves the target
// rows of layer T's output:
//
//   L(sv) = ( sum over prompts P, target rows t of ||target_t(sv) - target_t(0)||^p )^(1/q)
//
// with target rows as positions.ts selects them (default the last 2, weights multiplying the rows).
//
// Differences from the MELBO paper's code, on purpose (the formula wins):
// - its `(target - unsteered).norm(dim=1)` takes norms over the token axis (one per hidden unit);
//   here the norm is per position, over the hidden units, as the formula says. For p = 2 (the
//   default) both are the same sum of squares.
// - it raises each prompt's sum to 1/q separately and adds the prompts' losses; here the prompts'
//   sums are added first. For q = 1 (the default here) both are the same.
//
// Each prompt's partial sum S_P is built with differentiable ops over a graph rooted at the leaf sv
// (layers 0..S run once per prompt without a graph, as SteeringJacobian does) and differentiated with
// grad(); one prompt's graph lives at a time (inside a heap scope), and the outer power is applied on
// the host by the chain rule: dL/dsv = (1/q) (sum S_P)^(1/q - 1) sum dS_P/dsv.
import { grad } from "../autodiff/grad.js";
import { addRowVector, reshape } from "../autodiff/ops.js";
import { powScalar, rowSumSquares, sub, sumAll } from "../autodiff/reductions.js";
import { Tensor, fromArray } from "../autodiff/tensor.js";
import { InputError, type Qwen3Model } from "../model/qwen3.js";
import { checkPositions, resolvePositions, selectTargetRows, type Positions, type ResolvedPositions } from "../jacobian/positions.js";
import { checkSiteLayers } from "../jacobian/steering-jacobian.js";

export interface MelboSite {
  /** Decoder layer whose output receives sv (0-based). */
  sourceLayer: number;
  /** Decoder layer whose output is the target (>= sourceLayer). */
  targetLayer: number;
  /** Target positions: a number K (the last K) or a PositionSpec. */
  positions: Positions;
}

export interface MelboPower {
  /** exponent on each position's displacement norm */
  p: number;
  /** the sum is raised to 1/q */
  q: number;
}

interface PromptState {
  /** layer-S output without steering, [T, d]: a constant */
  base: Tensor;
  /** unsteered target rows (weights applied), [n*d]: a constant */
  target0: Tensor;
  sel: ResolvedPositions;
}

export class MelboObjective {
  readonly dim: number;
  private readonly states: PromptState[];
  /** Loss (and gradient) evaluations so far, for reporting. */
  evaluations = 0;

  constructor(
    readonly model: Qwen3Model,
    readonly prompts: readonly (readonly number[])[],
    readonly site: MelboSite,
  ) {
    const { sourceLayer: S, targetLayer: T } = site;
    checkSiteLayers(model.config.numLayers, S, T);
    checkPositions(site.positions);
    if (prompts.length === 0) throw new InputError("no prompt given (use --prompt, --prompts or --tokens)");
    const ctx = model.ctx;
    this.dim = model.config.hiddenSize;
    this.states = prompts.map((tokens, i) => {
      const sel = resolvePositions(site.positions, tokens.length, `prompt ${i + 1}`);
      model.checkTokens(tokens, `prompt ${i + 1}`);
      return ctx.noGrad(() => {
        const base = model.runLayers(model.embed(tokens), 0, S);
        const target0 = selectTargetRows(model.runLayers(base, S + 1, T), sel);
        return { base, target0, sel };
      });
    });
  }

  /** Norms of the layer-S output (unsteered) at every position of every prompt: the scale for R. */
  sourceNorms(): number[] {
    const d = this.dim;
    const out: number[] = [];
    for (const { base } of this.states) {
      const v = base.view();
      for (let t = 0; t < base.shape[0]; t++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += v[t * d + j] * v[t * d + j];
        out.push(Math.sqrt(s));
      }
    }
    return out;
  }

  /** The unsteered target rows of each prompt (weights applied), flattened. */
  unsteeredTargets(): Float32Array[] {
    return this.states.map((s) => s.target0.toArray());
  }

  /** L(sv) and, unless `withGradient` is false, dL/dsv (float64 on the host). */
  evaluate(sv: ArrayLike<number>, power: MelboPower, withGradient = true): { loss: number; gradient: Float64Array | null; perPrompt: number[] } {
    const { p, q } = power;
    const ctx = this.model.ctx;
    const d = this.dim;
    const { sourceLayer: S, targetLayer: T } = this.site;
    const svF32 = Float32Array.from(sv);
    const perPrompt: number[] = [];
    const acc = withGradient ? new Float64Array(d) : null;
    for (const { base, target0, sel } of this.states) {
      ctx.rt.heap.scope(() => {
        const leaf = fromArray(ctx, svF32, [d], withGradient);
        const partial = ctx.withGrad(withGradient, () => {
          const h = this.model.runLayers(addRowVector(base, leaf), S + 1, T);
          const diff = reshape(sub(selectTargetRows(h, sel), target0), [sel.rows.length, d]);
          // ||diff_t||^p = (||diff_t||^2)^(p/2)
          return sumAll(powScalar(rowSumSquares(diff), p / 2));
        });
        perPrompt.push(partial.view()[0]);
        if (acc) {
          const [g] = grad(partial, leaf, fromArray(ctx, [1], [1]));
          const gv = g!.view();
          for (let i = 0; i < d; i++) acc[i] += gv[i];
        }
      });
    }
    this.evaluations++;
    const total = perPrompt.reduce((a, b) => a + b, 0);
    const loss = Math.pow(total, 1 / q);
    if (!acc) return { loss, gradient: null, perPrompt };
    // Chain rule through the outer power; at total = 0 (sv with no effect) the slope is taken as 0.
    const outer = total > 0 ? (1 / q) * Math.pow(total, 1 / q - 1) : q === 1 ? 1 : 0;
    for (let i = 0; i < d; i++) acc[i] *= outer;
    return { loss, gradient: acc, perPrompt };
  }
}
