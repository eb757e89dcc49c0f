// The steering Jacobian J = d target / d sv (CONTRACT.md section 1): sv added to the residual stream
// at the output of layer S at every position, target = output of layer T at the last K positions,
// flattened to K*d. With several prompts J stacks their Jacobians, so J^T J = sum_p J_p^T J_p.
// Other position choices (an explicit list, per-position weights, all positions: see positions.ts)
// replace "the last K": the target is then the weighted selected rows, flattened.
//
// Layers 0..S run once per prompt without a graph (they do not depend on sv). Layers S+1..T run once
// per prompt with a graph rooted at the leaf sv, and that graph is reused by every product: each
// product allocates only inside a heap scope that it releases.
import { grad, jvpGraph } from "../autodiff/grad.js";
import { addRowVector } from "../autodiff/ops.js";
import { Tensor, fromArray, zeros } from "../autodiff/tensor.js";
import { InputError, checkTokens, type Qwen3Model } from "../model/qwen3.js";
import type { Qwen3Config } from "../model/config.js";
import { checkPositions, resolvePositions, selectTargetRows, type Positions, type ResolvedPositions } from "./positions.js";

export type ProductMethod = "double-vjp" | "jvp";

export interface SteeringSite {
  /** Decoder layer whose output receives sv (0-based). */
  sourceLayer: number;
  /** Decoder layer whose output is the target (>= sourceLayer). */
  targetLayer: number;
  /** The last K token positions (a number), or another choice of positions and weights (positions.ts). */
  positions: Positions;
  /** The point sv0 where J is evaluated (zeros when absent). */
  at?: Float32Array;
}

/** Model-size aware default layers: the seed's S = 6, T = 20 of 28 layers, scaled. */
export function defaultLayers(numLayers: number): { source: number; target: number } {
  const source = Math.min(numLayers - 1, Math.round((numLayers * 6) / 28));
  const target = Math.max(source, Math.min(numLayers - 1, Math.round((numLayers * 20) / 28)));
  return { source, target };
}

/** S and T must be layers of the model, with T at or after S; messages name the CLI flags. */
export function checkSiteLayers(numLayers: number, S: number, T: number): void {
  const L = numLayers;
  if (!Number.isInteger(S) || S < 0 || S >= L) throw new InputError(`--source-layer ${S} is out of range: the model has layers 0..${L - 1}`);
  if (!Number.isInteger(T) || T < 0 || T >= L) throw new InputError(`--target-layer ${T} is out of range: the model has layers 0..${L - 1}`);
  if (S > T) throw new InputError(`--source-layer ${S} is after --target-layer ${T}: the target must be at or after the steering site`);
}

/** Checks a site against a model configuration and prompts (for the autodiff path and the engine alike). */
export function validateSite(cfg: Qwen3Config, prompts: readonly (readonly number[])[], site: SteeringSite): void {
  checkSiteLayers(cfg.numLayers, site.sourceLayer, site.targetLayer);
  checkPositions(site.positions);
  if (prompts.length === 0) throw new InputError("no prompt given (use --prompt, --prompts or --tokens)");
  prompts.forEach((p, i) => {
    checkTokens(cfg, p, `prompt ${i + 1}`);
    resolvePositions(site.positions, p.length, `prompt ${i + 1}`);
  });
  if (site.at) {
    if (site.at.length !== cfg.hiddenSize) throw new InputError(`--at vector has length ${site.at.length}, the model's hidden size is ${cfg.hiddenSize}`);
    for (const x of site.at) if (!Number.isFinite(x)) throw new InputError("--at vector has a non-finite entry");
  }
}

interface PromptGraph {
  sv: Tensor;
  target: Tensor;
  /** Where this prompt's part starts in J's output (prompts may select different numbers of rows). */
  offset: number;
}

export class SteeringJacobian {
  readonly inputDim: number;
  readonly outputDim: number;
  private readonly graphs: PromptGraph[];
  /** The target rows (and weights) of each prompt. */
  readonly selections: ResolvedPositions[];
  /** Count of J^T J v products (or equivalents) performed, for reporting. */
  products = 0;

  constructor(
    readonly model: Qwen3Model,
    readonly prompts: readonly (readonly number[])[],
    readonly site: SteeringSite,
  ) {
    validateSite(model.config, prompts, site);
    const d = model.config.hiddenSize;
    const ctx = model.ctx;
    this.inputDim = d;
    this.selections = prompts.map((tokens, i) => resolvePositions(site.positions, tokens.length, `prompt ${i + 1}`));
    let offset = 0;
    this.graphs = prompts.map((tokens, p) => {
      const sel = this.selections[p];
      // Layers 0..S do not depend on sv: computed once, no graph.
      const base = ctx.noGrad(() => model.runLayers(model.embed(tokens), 0, site.sourceLayer));
      const sv = site.at ? fromArray(ctx, site.at, [d], true) : zeros(ctx, [d], true);
      const target = ctx.withGrad(true, () => {
        let h = addRowVector(base, sv);
        h = model.runLayers(h, site.sourceLayer + 1, site.targetLayer);
        return selectTargetRows(h, sel);
      });
      const graph = { sv, target, offset };
      offset += target.size;
      return graph;
    });
    this.outputDim = offset;
  }

  /** Target activations per prompt (length K*d each; rows*d for other position choices, weights applied). */
  targets(): Float32Array[] {
    return this.graphs.map((g) => g.target.toArray());
  }

  /** J^T J v summed over prompts, by the chosen method. */
  normalProduct(v: Float32Array, method: ProductMethod): Float32Array {
    const ctx = this.model.ctx;
    const d = this.inputDim;
    const acc = new Float64Array(d);
    for (const { sv, target } of this.graphs) {
      ctx.rt.heap.scope(() => {
        const vt = fromArray(ctx, v, [d]);
        let jv: Tensor;
        if (method === "double-vjp") {
          // The seed's three steps, verbatim: g = J^T u as a function of the scaffolding u (zeros);
          // differentiating g with respect to u along v gives J v; one more VJP gives J^T J v.
          const u = zeros(ctx, target.shape, true);
          const [g] = grad(target, sv, u, { createGraph: true });
          [jv] = grad(g!, u, vt) as Tensor[];
        } else {
          [jv] = jvpGraph(target, sv, vt) as Tensor[];
        }
        const [jtjv] = grad(target, sv, jv.detach());
        const out = jtjv!.view();
        for (let i = 0; i < d; i++) acc[i] += out[i];
      });
    }
    this.products++;
    return Float32Array.from(acc);
  }

  /** J v for each prompt, concatenated (length outputDim). Forward mode. */
  apply(v: Float32Array): Float32Array {
    const ctx = this.model.ctx;
    const out = new Float32Array(this.outputDim);
    this.graphs.forEach(({ sv, target, offset }) => {
      ctx.rt.heap.scope(() => {
        const [jv] = jvpGraph(target, sv, fromArray(ctx, v, [this.inputDim]));
        out.set(jv!.view(), offset);
      });
    });
    return out;
  }

  /** J^T u for u of length outputDim (the prompts' parts summed). Reverse mode. */
  applyTransposed(u: Float32Array): Float32Array {
    const ctx = this.model.ctx;
    const d = this.inputDim;
    const acc = new Float64Array(d);
    this.graphs.forEach(({ sv, target, offset }) => {
      ctx.rt.heap.scope(() => {
        const n = target.size;
        const [g] = grad(target, sv, fromArray(ctx, u.subarray(offset, offset + n), [n]));
        const gv = g!.view();
        for (let i = 0; i < d; i++) acc[i] += gv[i];
      });
    });
    return Float32Array.from(acc);
  }
}
