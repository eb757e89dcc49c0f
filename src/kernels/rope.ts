// Rotary position embedding, rotate-half form (transformers' apply_rotary_pos_emb), and its tables.
// Kernels: assembly/rope.ts. Pointers are byte offsets of f32 buffers in rt.memory.
//   x, y: [T, nHeads * headDim]; cos, sin: [T, headDim / 2]; per head, with half = headDim / 2:
//   y[j] = x[j] * cos[t, j] - x[j + half] * sin[t, j];  y[j + half] = x[j + half] * cos[t, j] + x[j] * sin[t, j]
// RoPE is linear in x: its JVP is ropeForward applied to the tangent; its VJP is ropeVjp (rotation
// by the opposite angle).
import type { Runtime } from "../runtime/runtime.js";

function checkSizes(T: number, nHeads: number, headDim: number): void {
  if (!Number.isInteger(T) || T < 0 || !Number.isInteger(nHeads) || nHeads < 0 || !Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) {
    throw new Error(`rope: bad sizes T=${T} nHeads=${nHeads} headDim=${headDim} (headDim must be even)`);
  }
}

/** y = R x (also the JVP: ty = R tx). y may alias x. */
export function ropeForward(rt: Runtime, x: number, y: number, cos: number, sin: number, T: number, nHeads: number, headDim: number): void {
  checkSizes(T, nHeads, headDim);
  rt.k.ropeForward(x, y, cos, sin, T, nHeads, headDim);
}

/** The JVP of RoPE is RoPE itself (it is linear in x): ty = R tx. ty may alias tx. */
export const ropeJvp = ropeForward;

/** gx = R^T gy (rotation by -angle). gx may alias gy. */
export function ropeVjp(rt: Runtime, gy: number, gx: number, cos: number, sin: number, T: number, nHeads: number, headDim: number): void {
  checkSizes(T, nHeads, headDim);
  rt.k.ropeVjp(gy, gx, cos, sin, T, nHeads, headDim);
}

/**
 * cos and sin tables [T, headDim / 2] for the given token positions, computed as transformers'
 * default rotary embedding does in float32 (every step rounded to f32 as torch would):
 *   inv_freq[j] = 1 / theta^(2j / headDim);  angle = pos * inv_freq[j];  cos(angle), sin(angle).
 * Transformers concatenates the table with itself to [T, headDim]; the kernels take the half.
 */
export function ropeTables(positions: ArrayLike<number>, headDim: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2 !== 0) throw new Error(`ropeTables: headDim must be even, got ${headDim}`);
  if (!(theta > 0)) throw new Error(`ropeTables: theta must be positive, got ${theta}`);
  const f = Math.fround;
  const half = headDim / 2;
  const base = f(theta);
  const invFreq = new Float64Array(half);
  for (let j = 0; j < half; j++) {
    // torch.arange(0, dim, 2).float() / dim, then base ** that, then 1.0 / that: each an f32 op
    const exponent = f(f(2 * j) / headDim);
    invFreq[j] = f(1 / f(Math.pow(base, exponent)));
  }
  const T = positions.length;
  const cos = new Float32Array(T * half);
  const sin = new Float32Array(T * half);
  for (let t = 0; t < T; t++) {
    const pos = f(positions[t]);
    for (let j = 0; j < half; j++) {
      const angle = f(pos * invFreq[j]);
      cos[t * half + j] = Math.cos(angle);
      sin[t * half + j] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
