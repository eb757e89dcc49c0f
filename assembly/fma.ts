// a * b + c on four lanes: a fused relaxed_madd in the relaxed build, mul then add otherwise.
// Every kernel that multiplies and accumulates goes through this, so the two builds differ in one place.
// @ts-ignore: decorator
@inline
export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return f32x4.relaxed_madd(a, b, c);
  } else {
    return f32x4.add(f32x4.mul(a, b), c);
  }
}
