// Typed wrappers of the SwiGLU gate kernels (assembly/silu.ts): y = silu(g) * u, the middle of
// transformers' Qwen3MLP down(silu(gate(x)) * up(x)). Pointers are byte offsets of f32 buffers in
// rt.memory; n is the element count (tokens * intermediate_size). Finite for any finite g.
import type { Runtime } from "../runtime/runtime.js";

function checkSize(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new Error(`siluMul: bad size n=${n}`);
}

/** g, u: [n] -> y: [n], y = g / (1 + exp(-g)) * u. y may alias g or u. */
export function siluMulForward(rt: Runtime, g: number, u: number, y: number, n: number): void {
  checkSize(n);
  rt.k.siluMulForward(g, u, y, n);
}

/**
 * gg = gy * u * silu'(g),  gu = gy * silu(g);  silu'(g) = s * (1 + g * (1 - s)), s = sigmoid(g).
 * All [n]. gg and gu may alias gy (not each other, nor g or u).
 */
export function siluMulVjp(rt: Runtime, g: number, u: number, gy: number, gg: number, gu: number, n: number): void {
  checkSize(n);
  rt.k.siluMulVjp(g, u, gy, gg, gu, n);
}

/** ty = tg * u * silu'(g) + tu * silu(g). All [n]. ty may alias tg or tu. */
export function siluMulJvp(rt: Runtime, g: number, u: number, tg: number, tu: number, ty: number, n: number): void {
  checkSize(n);
  rt.k.siluMulJvp(g, u, tg, tu, ty, n);
}
