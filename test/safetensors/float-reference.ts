// Independent references for 16-bit float rounding, in plain float64 arithmetic: find the two
// neighbouring representable values by scaling with powers of two, pick the nearer, ties to even.
// No bit tricks, so they share nothing with src/safetensors/float16.ts.

/** The value of the f32 with bit pattern `bits`, computed from the IEEE formula. */
export function f32FromBitsRef(bits: number): number {
  const sign = bits >>> 31 ? -1 : 1;
  const e = (bits >>> 23) & 0xff;
  const m = bits & 0x7fffff;
  if (e === 0xff) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * m * 2 ** -149;
  return sign * (1 + m / 2 ** 23) * 2 ** (e - 127);
}

/** Round finite or infinite x to a format with `mant` stored mantissa bits, min exponent `emin`, max `emax`. */
function roundRef(x: number, mant: number, emin: number, emax: number): number {
  if (Number.isNaN(x)) return NaN;
  if (!Number.isFinite(x) || x === 0) return x;
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  if (e < emin) e = emin; // subnormal range: fixed spacing
  const ulp = 2 ** (e - mant);
  const q = a / ulp; // exact: a has at most 24 significant bits
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  const v = r * ulp;
  if (v >= 2 ** (emax + 1)) return sign * Infinity;
  return sign * v; // sign * 0 keeps -0
}

export const roundBf16Ref = (x: number): number => roundRef(x, 7, -126, 127);
export const roundF16Ref = (x: number): number => roundRef(x, 10, -14, 15);

/** Value of a binary16 pattern from the IEEE formula. */
export function f16ValueRef(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * m * 2 ** -24;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Value of a bfloat16 pattern from the IEEE-style formula. */
export function bf16ValueRef(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 0xff;
  const m = h & 0x7f;
  if (e === 0xff) return m ? NaN : sign * Infinity;
  if (e === 0) return sign * m * 2 ** -133;
  return sign * (1 + m / 128) * 2 ** (e - 127);
}

/** Same number, with -0 and 0 told apart and NaN equal to NaN. */
export function sameNumber(a: number, b: number): boolean {
  return Object.is(a, b);
}
