// SwiGLU gate, as transformers' Qwen3MLP: down(silu(gate(x)) * up(x)). This file is the middle part:
//   y = silu(g) * u,  silu(g) = g / (1 + exp(-g))     (the same expression torch evaluates)
// Legend: n = element count (tokens * intermediate_size); g, u, y and the derivatives are [n].
//
// Derivatives, with e = exp(-g), s = sigmoid(g) = 1 / (1 + e), 1 - s = e * s (no cancellation):
//   silu'(g) = s * (1 + g * (1 - s)) = s * (1 + g * e * s)
//   VJP: gg = gy * u * silu'(g),  gu = gy * silu(g)
//   JVP: ty = tg * u * silu'(g) + tu * silu(g)
//
// exp is a four-lane Cody-Waite reduction plus the Cephes expf polynomial (about 1 ulp). Its
// argument is clamped to [-87, 89]. Below -87 it returns 0 (exp(-g) < 2^-125 is 0 to f32 next to 1,
// and g * (1 - s) = g * e * s must vanish even for g near f32's max). Above 88.4 it returns +Inf
// (2^128), so for g < -88.4 silu(g) = g / Inf = -0 and sigmoid(g) = 0 exactly (the true values are
// below 3e-37); 1 - s = e * s is then Inf * 0, so it is capped at 1 with pmin, which also maps that
// NaN to 1. No NaN or Inf comes out for any finite g.
// Tails (n not a multiple of 4) go through the same four-lane code on a partially filled vector,
// so an element's result does not depend on where it sits.
import { madd } from "./fma";

// @ts-ignore: decorator
@inline
function expv(x: v128): v128 {
  const xc = f32x4.min(f32x4.max(x, f32x4.splat(-87.0)), f32x4.splat(89.0));
  const n = f32x4.nearest(f32x4.mul(xc, f32x4.splat(1.44269504088896341)));
  // r = x - n * ln2 in two steps (ln2 = C1 + C2, C1 exact in few bits so n * C1 is exact)
  let r = madd(n, f32x4.splat(-0.693359375), xc);
  r = madd(n, f32x4.splat(2.12194440e-4), r);
  let p = f32x4.splat(1.9875691500e-4);
  p = madd(p, r, f32x4.splat(1.3981999507e-3));
  p = madd(p, r, f32x4.splat(8.3334519073e-3));
  p = madd(p, r, f32x4.splat(4.1665795894e-2));
  p = madd(p, r, f32x4.splat(1.6666665459e-1));
  p = madd(p, r, f32x4.splat(5.0000001201e-1));
  p = madd(p, f32x4.mul(r, r), f32x4.add(r, f32x4.splat(1.0)));
  // 2^n for n in [-126, 128]: build the exponent bits directly (n = 128 gives the bits of +Inf)
  const ni = i32x4.trunc_sat_f32x4_s(n);
  const pow2n = i32x4.shl(i32x4.add(ni, i32x4.splat(127)), 23);
  // below -87 return 0 (not the clamped e^-87): g * (1 - s) = g * e * s must vanish for huge g
  return v128.and(f32x4.mul(p, pow2n), f32x4.ge(x, f32x4.splat(-87.0)));
}

// Load k = 1..3 trailing f32 values into lanes 0..k-1 (other lanes 0).
// @ts-ignore: decorator
@inline
function loadTail(p: usize, k: i32): v128 {
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (k > 1) v = f32x4.replace_lane(v, 1, load<f32>(p + 4));
  if (k > 2) v = f32x4.replace_lane(v, 2, load<f32>(p + 8));
  return v;
}

// Store lanes 0..k-1 of v (k = 1..3).
// @ts-ignore: decorator
@inline
function storeTail(p: usize, k: i32, v: v128): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (k > 1) store<f32>(p + 4, f32x4.extract_lane(v, 1));
  if (k > 2) store<f32>(p + 8, f32x4.extract_lane(v, 2));
}

// @ts-ignore: decorator
@inline
function siluMulForward4(g: v128, u: v128): v128 {
  const den = f32x4.add(f32x4.splat(1.0), expv(f32x4.neg(g)));
  return f32x4.mul(silu4(g, den), u);
}

// g, u: [n] -> y: [n], y = silu(g) * u. y may alias g or u.
export function siluMulForward(g: usize, u: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, siluMulForward4(v128.load(g + o), v128.load(u + o)));
  }
  const k = n - i;
  if (k > 0) {
    const o = <usize>i << 2;
    storeTail(y + o, k, siluMulForward4(loadTail(g + o, k), loadTail(u + o, k)));
  }
}

// silu(g) = g / den and silu'(g) = s * (1 + g * (1 - s)), 1 - s = e * s, with e = exp(-g), den = 1 + e, s = 1 / den.
// (Two small inlined helpers rather than one with two outputs: AssemblyScript has no tuples, and
// globals would keep V8 from holding the values in registers.)
// @ts-ignore: decorator
@inline
function silu4(g: v128, den: v128): v128 {
  return f32x4.div(g, den);
}

// @ts-ignore: decorator
@inline
function dsilu4(g: v128, e: v128, den: v128): v128 {
  const one = f32x4.splat(1.0);
  const s = f32x4.div(one, den);
  // 1 - s = e * s, capped at 1; pmin(a, b) = b < a ? b : a, so Inf * 0 = NaN gives 1
  const oneMinusS = f32x4.pmin(one, f32x4.mul(e, s));
  return f32x4.mul(s, madd(g, oneMinusS, one));
}

// g, u: [n], gy: [n] -> gg: [n], gu: [n]. gg = gy * u * silu'(g), gu = gy * silu(g).
// gg and gu may alias gy (not each other, nor g or u).
export function siluMulVjp(g: usize, u: usize, gy: usize, gg: usize, gu: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const gv = v128.load(g + o);
    const e = expv(f32x4.neg(gv));
    const den = f32x4.add(f32x4.splat(1.0), e);
    const gyv = v128.load(gy + o);
    const uv = v128.load(u + o);
    v128.store(gg + o, f32x4.mul(f32x4.mul(gyv, uv), dsilu4(gv, e, den)));
    v128.store(gu + o, f32x4.mul(gyv, silu4(gv, den)));
  }
  const k = n - i;
  if (k > 0) {
    const o = <usize>i << 2;
    const gv = loadTail(g + o, k);
    const e = expv(f32x4.neg(gv));
    const den = f32x4.add(f32x4.splat(1.0), e);
    const gyv = loadTail(gy + o, k);
    const uv = loadTail(u + o, k);
    storeTail(gg + o, k, f32x4.mul(f32x4.mul(gyv, uv), dsilu4(gv, e, den)));
    storeTail(gu + o, k, f32x4.mul(gyv, silu4(gv, den)));
  }
}

// g, u: [n], tg, tu: [n] -> ty: [n]. ty = tg * u * silu'(g) + tu * silu(g). ty may alias tg or tu.
export function siluMulJvp(g: usize, u: usize, tg: usize, tu: usize, ty: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const gv = v128.load(g + o);
    const e = expv(f32x4.neg(gv));
    const den = f32x4.add(f32x4.splat(1.0), e);
    const a = f32x4.mul(f32x4.mul(v128.load(tg + o), v128.load(u + o)), dsilu4(gv, e, den));
    v128.store(ty + o, madd(v128.load(tu + o), silu4(gv, den), a));
  }
  const k = n - i;
  if (k > 0) {
    const o = <usize>i << 2;
    const gv = loadTail(g + o, k);
    const e = expv(f32x4.neg(gv));
    const den = f32x4.add(f32x4.splat(1.0), e);
    const a = f32x4.mul(f32x4.mul(loadTail(tg + o, k), loadTail(u + o, k)), dsilu4(gv, e, den));
    storeTail(ty + o, k, madd(loadTail(tu + o, k), silu4(gv, den), a));
  }
}
