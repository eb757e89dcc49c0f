// Element-wise kernels and the reductions the solvers need.
// Shapes: n = element count; rows x cols row-major. All pointers are byte offsets of f32 buffers.
// Reductions (dot, sumSquares) accumulate in f64 in a fixed order, so results do not depend on
// how a caller splits work, and are accurate enough for Gram-Schmidt on vectors of 10^5 entries.
import { madd } from "./fma";

/** dst[i] = value */
export function fill(dst: usize, n: i32, value: f32): void {
  const v = f32x4.splat(value);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(dst + (<usize>i << 2), v);
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), value);
}

/** dst[i] = src[i] (regions may overlap) */
export function copy(dst: usize, src: usize, n: i32): void {
  memory.copy(dst, src, <usize>n << 2);
}

/** out[i] = a[i] + b[i]; out may alias a or b */
export function add(a: usize, b: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

/** out[i] = a[i] - b[i]; out may alias a or b */
export function sub(a: usize, b: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.sub(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) - load<f32>(b + o));
  }
}

/** out[i] = alpha * x[i]; out may alias x */
export function scale(x: usize, alpha: f32, out: usize, n: i32): void {
  const a = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.mul(a, v128.load(x + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, alpha * load<f32>(x + o));
  }
}

/** y[i] += alpha * x[i] */
export function axpy(alpha: f32, x: usize, y: usize, n: i32): void {
  const a = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, madd(a, v128.load(x + o), v128.load(y + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, alpha * load<f32>(x + o) + load<f32>(y + o));
  }
}

/** sum_i a[i] * b[i], products formed in f32 and summed in f64 (two f64x2 lanes pairs, fixed order) */
export function dot(a: usize, b: usize, n: i32): f64 {
  let lo = f64x2.splat(0);
  let hi = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const p = f32x4.mul(v128.load(a + o), v128.load(b + o));
    lo = f64x2.add(lo, f64x2.promote_low_f32x4(p));
    hi = f64x2.add(hi, f64x2.promote_low_f32x4(i32x4.shuffle(p, p, 2, 3, 0, 1)));
  }
  let s = f64x2.extract_lane(lo, 0) + f64x2.extract_lane(lo, 1) + f64x2.extract_lane(hi, 0) + f64x2.extract_lane(hi, 1);
  for (; i < n; i++) {
    const o = <usize>i << 2;
    s += <f64>(load<f32>(a + o) * load<f32>(b + o));
  }
  return s;
}

/** sum_i x[i]^2, as dot(x, x) */
export function sumSquares(x: usize, n: i32): f64 {
  return dot(x, x, n);
}

/** out[r, c] = x[r, c] + v[c]   (x, out: [rows, cols], v: [cols]); out may alias x */
export function addRowVector(x: usize, v: usize, out: usize, rows: i32, cols: i32): void {
  const rowBytes = <usize>cols << 2;
  for (let r = 0; r < rows; r++) {
    const off = <usize>r * rowBytes;
    add(x + off, v, out + off, cols);
  }
}

/** out[c] = sum_r x[r, c]   (x: [rows, cols], out: [cols]); rows summed in order 0..rows-1 */
export function sumRows(x: usize, out: usize, rows: i32, cols: i32): void {
  fill(out, cols, 0);
  const rowBytes = <usize>cols << 2;
  for (let r = 0; r < rows; r++) add(out, x + <usize>r * rowBytes, out, cols);
}
