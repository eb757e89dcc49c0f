// Load a checkpoint directory into a fresh runtime for tests.
import { AutodiffContext } from "../../src/autodiff/tensor.js";
import { Qwen3Model } from "../../src/model/qwen3.js";
import { loadQwen3Weights } from "../../src/model/weights.js";
import { openCheckpoint } from "../../src/node/checkpoint.js";
import { createNodeRuntime } from "../../src/node/runtime.js";

export async function loadTestModel(dir: string, opts: { head?: boolean } = {}) {
  const ckpt = openCheckpoint(dir);
  const rt = await createNodeRuntime();
  const ctx = new AutodiffContext(rt);
  const weights = ctx.noGrad(() => loadQwen3Weights(ctx, ckpt.config, ckpt.tensors, { head: opts.head ?? true }));
  return { rt, ctx, ckpt, model: new Qwen3Model(ctx, ckpt.config, weights) };
}

export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-30);
}

/** J as rows [outputDim][inputDim], formed column by column with forward-mode products (J e_j). */
export function explicitJacobian(J: { inputDim: number; outputDim: number; apply(v: Float32Array): Float32Array }): Float64Array[] {
  const d = J.inputDim;
  const rows = Array.from({ length: J.outputDim }, () => new Float64Array(d));
  for (let j = 0; j < d; j++) {
    const e = new Float32Array(d);
    e[j] = 1;
    J.apply(e).forEach((x, i) => (rows[i][j] = x));
  }
  return rows;
}
