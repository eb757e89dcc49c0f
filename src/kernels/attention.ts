// Typed host wrappers for the causal grouped-query attention kernels (assembly/attention.ts).
// Pointers are byte offsets of f32 buffers in rt.memory; layouts as in the kernel file:
//   q, out, gq, tq, tout, gout: [Tq, nHeads * headDim]; k, v, gk, gv, tk, tv: [Tk, nKv * headDim];
//   probs: [nHeads, Tq, Tk]. Queries are the last Tq of Tk positions (Tq == Tk without a KV cache).
import type { Runtime } from "../runtime/runtime.js";

export interface AttentionDims {
  /** query rows */
  Tq: number;
  /** key/value rows, >= Tq */
  Tk: number;
  nHeads: number;
  nKv: number;
  headDim: number;
}

function checkDims(Tq: number, Tk: number, nHeads: number, nKv: number, headDim: number): void {
  for (const [name, x] of [["Tq", Tq], ["Tk", Tk], ["nHeads", nHeads], ["nKv", nKv], ["headDim", headDim]] as const) {
    if (!Number.isInteger(x) || x < 0) throw new Error(`attention: ${name} = ${x} is not a non-negative integer`);
  }
  if (nKv === 0 || nHeads % nKv !== 0) throw new Error(`attention: ${nHeads} query heads not a multiple of ${nKv} key/value heads`);
  if (Tq > Tk) throw new Error(`attention: ${Tq} queries but only ${Tk} keys (queries are the last Tq of Tk positions)`);
}

/** Floats of scratch attentionVjp / attentionJvp need (one [Tq, Tk] buffer). */
export function attentionScratchFloats(rt: Runtime, Tq: number, Tk: number, nHeads: number, nKv: number, headDim: number): number {
  return rt.k.attentionScratchFloats(Tq, Tk, nHeads, nKv, headDim) as number;
}

/** out = softmax(scale q k^T + causal mask) v per head; probs (saved for the derivatives) gets P, 0 where masked. */
export function attentionForward(
  rt: Runtime, q: number, k: number, v: number, out: number, probs: number,
  Tq: number, Tk: number, nHeads: number, nKv: number, headDim: number, scale: number,
): void {
  checkDims(Tq, Tk, nHeads, nKv, headDim);
  rt.k.attentionForward(q, k, v, out, probs, Tq, Tk, nHeads, nKv, headDim, scale);
}

/** Overwrites gq, gk, gv with the VJP of attention at (q, k, v) applied to gout. Scratch is taken from rt.heap and released. */
export function attentionVjp(
  rt: Runtime, q: number, k: number, v: number, probs: number, gout: number, gq: number, gk: number, gv: number,
  Tq: number, Tk: number, nHeads: number, nKv: number, headDim: number, scale: number,
): void {
  checkDims(Tq, Tk, nHeads, nKv, headDim);
  rt.heap.scope(() => {
    const scratch = rt.heap.allocF32(attentionScratchFloats(rt, Tq, Tk, nHeads, nKv, headDim));
    rt.k.attentionVjp(q, k, v, probs, gout, gq, gk, gv, Tq, Tk, nHeads, nKv, headDim, scale, scratch);
  });
}

/** Overwrites tout with the JVP of attention at (q, k, v) along (tq, tk, tv). Scratch is taken from rt.heap and released. */
export function attentionJvp(
  rt: Runtime, q: number, k: number, v: number, probs: number, tq: number, tk: number, tv: number, tout: number,
  Tq: number, Tk: number, nHeads: number, nKv: number, headDim: number, scale: number,
): void {
  checkDims(Tq, Tk, nHeads, nKv, headDim);
  rt.heap.scope(() => {
    const scratch = rt.heap.allocF32(attentionScratchFloats(rt, Tq, Tk, nHeads, nKv, headDim));
    rt.k.attentionJvp(q, k, v, probs, tq, tk, tv, tout, Tq, Tk, nHeads, nKv, headDim, scale, scratch);
  });
}
