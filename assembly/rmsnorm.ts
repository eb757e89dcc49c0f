// RMSNorm, as transformers' Qwen3RMSNorm: y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps).
// Legend: rows = number of normalised vectors (tokens, or tokens * heads for q_norm / k_norm),
// dim = length of each (hidden_size, or head_dim). All pointers are byte offsets of f32 buffers.
//
// Row sums (sum x^2, sum x*g, sum x*t) are products formed in f32 and summed in f64, in a fixed
// order; rstd is computed in f64 and rounded once, so it is the correctly rounded value of the
// f32 inputs' rstd (torch float32 is within a few ulp of it).
//
// Derivatives (per row; w is a constant, no weight gradient is formed):
//   dy_j/dx_i = w_j * (delta_ij * rstd - x_j * x_i * rstd^3 / dim)
//   VJP: g = w * gy;  gx = rstd * g - x * (rstd^3 * sum(x * g) / dim)
//   JVP: ty = w * (rstd * tx - x * (rstd^3 * sum(x * tx) / dim))
// J is symmetric up to the diagonal scaling by w, and both are linear in their cotangent/tangent.
import { madd } from "./fma";
// Row sums of products: products in f32, sums in f64 in a fixed order (elementwise.ts).
import { dot as rowDot } from "./elementwise";


// x: [rows, dim], w: [dim] -> y: [rows, dim], rstd: [rows] (saved for rmsnormVjp / rmsnormJvp).
// y may alias x.
export function rmsnormForward(x: usize, w: usize, y: usize, rstd: usize, rows: i32, dim: i32, eps: f32): void {
  const rowBytes = <usize>dim << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    const yr = y + <usize>r * rowBytes;
    const ms = rowDot(xr, xr, dim) / <f64>dim;
    const s = <f32>(1.0 / Math.sqrt(ms + <f64>eps));
    store<f32>(rstd + (<usize>r << 2), s);
    const sv = f32x4.splat(s);
    let i = 0;
    for (; i + 4 <= dim; i += 4) {
      const o = <usize>i << 2;
      // same rounding order as torch: (x * rstd) first, then * w
      v128.store(yr + o, f32x4.mul(v128.load(w + o), f32x4.mul(v128.load(xr + o), sv)));
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      store<f32>(yr + o, load<f32>(w + o) * (load<f32>(xr + o) * s));
    }
  }
}

// x: [rows, dim], w: [dim], rstd: [rows] (from rmsnormForward), gy: [rows, dim] -> gx: [rows, dim].
// gx = J^T gy. gx may alias gy.
export function rmsnormVjp(x: usize, w: usize, rstd: usize, gy: usize, gx: usize, rows: i32, dim: i32): void {
  const rowBytes = <usize>dim << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    const gyr = gy + <usize>r * rowBytes;
    const gxr = gx + <usize>r * rowBytes;
    const s = load<f32>(rstd + (<usize>r << 2));
    // sum_i x_i * w_i * gy_i, with (w * gy) rounded to f32 first as the update below uses it
    let lo = f64x2.splat(0);
    let hi = f64x2.splat(0);
    let i = 0;
    for (; i + 4 <= dim; i += 4) {
      const o = <usize>i << 2;
      const p = f32x4.mul(v128.load(xr + o), f32x4.mul(v128.load(w + o), v128.load(gyr + o)));
      lo = f64x2.add(lo, f64x2.promote_low_f32x4(p));
      hi = f64x2.add(hi, f64x2.promote_low_f32x4(i32x4.shuffle(p, p, 2, 3, 0, 1)));
    }
    let d = (f64x2.extract_lane(lo, 0) + f64x2.extract_lane(hi, 0)) + (f64x2.extract_lane(lo, 1) + f64x2.extract_lane(hi, 1));
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      d += <f64>(load<f32>(xr + o) * (load<f32>(w + o) * load<f32>(gyr + o)));
    }
    const sd = <f64>s;
    const c = <f32>(-(sd * sd * sd) * d / <f64>dim);
    const sv = f32x4.splat(s);
    const cv = f32x4.splat(c);
    i = 0;
    for (; i + 4 <= dim; i += 4) {
      const o = <usize>i << 2;
      const g = f32x4.mul(v128.load(w + o), v128.load(gyr + o));
      v128.store(gxr + o, madd(cv, v128.load(xr + o), f32x4.mul(sv, g)));
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      const g = load<f32>(w + o) * load<f32>(gyr + o);
      store<f32>(gxr + o, c * load<f32>(xr + o) + s * g);
    }
  }
}

// x: [rows, dim], w: [dim], rstd: [rows] (from rmsnormForward), tx: [rows, dim] -> ty: [rows, dim].
// ty = J tx. ty may alias tx.
export function rmsnormJvp(x: usize, w: usize, rstd: usize, tx: usize, ty: usize, rows: i32, dim: i32): void {
  const rowBytes = <usize>dim << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes;
    const txr = tx + <usize>r * rowBytes;
    const tyr = ty + <usize>r * rowBytes;
    const s = load<f32>(rstd + (<usize>r << 2));
    const d = rowDot(xr, txr, dim);
    const sd = <f64>s;
    const c = <f32>(-(sd * sd * sd) * d / <f64>dim);
    const sv = f32x4.splat(s);
    const cv = f32x4.splat(c);
    let i = 0;
    for (; i + 4 <= dim; i += 4) {
      const o = <usize>i << 2;
      const inner = madd(cv, v128.load(xr + o), f32x4.mul(sv, v128.load(txr + o)));
      v128.store(tyr + o, f32x4.mul(v128.load(w + o), inner));
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      store<f32>(tyr + o, load<f32>(w + o) * (c * load<f32>(xr + o) + s * load<f32>(txr + o)));
    }
  }
}
