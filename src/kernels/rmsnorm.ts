// Typed wrappers of the RMSNorm kernels (assembly/rmsnorm.ts). Pointers are byte offsets of f32
// buffers in rt.memory; sizes are element counts. Semantics of transformers' Qwen3RMSNorm:
//   y = w * (x * rstd),  rstd = 1 / sqrt(mean(x^2) + eps), per row, in f32.
// Also used per head for Qwen3's q_norm / k_norm: rows = T * heads, dim = head_dim.
import type { Runtime } from "../runtime/runtime.js";

function checkSizes(rows: number, dim: number): void {
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(dim) || dim < 1) {
    throw new Error(`rmsnorm: bad sizes rows=${rows} dim=${dim}`);
  }
}

/**
 * x: [rows, dim], w: [dim] -> y: [rows, dim], rstd: [rows] (keep it for rmsnormVjp / rmsnormJvp).
 * y may alias x.
 */
export function rmsnormForward(rt: Runtime, x: number, w: number, y: number, rstd: number, rows: number, dim: number, eps: number): void {
  checkSizes(rows, dim);
  rt.k.rmsnormForward(x, w, y, rstd, rows, dim, eps);
}

/**
 * gx = J^T gy:  g = w * gy,  gx = rstd * g - x * (rstd^3 * sum(x * g) / dim)  (per row).
 * x, gy, gx: [rows, dim], w: [dim], rstd: [rows] from rmsnormForward. gx may alias gy.
 */
export function rmsnormVjp(rt: Runtime, x: number, w: number, rstd: number, gy: number, gx: number, rows: number, dim: number): void {
  checkSizes(rows, dim);
  rt.k.rmsnormVjp(x, w, rstd, gy, gx, rows, dim);
}

/**
 * ty = J tx = w * (rstd * tx - x * (rstd^3 * sum(x * tx) / dim))  (per row).
 * x, tx, ty: [rows, dim], w: [dim], rstd: [rows] from rmsnormForward. ty may alias tx.
 */
export function rmsnormJvp(rt: Runtime, x: number, w: number, rstd: number, tx: number, ty: number, rows: number, dim: number): void {
  checkSizes(rows, dim);
  rt.k.rmsnormJvp(x, w, rstd, tx, ty, rows, dim);
}
