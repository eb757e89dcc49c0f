// 16-bit float formats <-> f32, bit-exact.
//
// BF16 is the top half of an f32 (8 exponent bits, 7 mantissa bits); F16 is IEEE binary16 (5 exponent
// bits, 10 mantissa bits, subnormals below 2^-14). Narrowing rounds to nearest, ties to even (what
// PyTorch's `.to(torch.bfloat16)` / `.half()` do); NaN stays NaN (quieted, sign kept), infinities stay
// infinite, values past the largest finite number round to infinity. Widening is exact.
//
// The scalar functions are the definitions; the array versions are the fast paths readers and
// writers use, and are tested against the scalar ones.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The f32 bit pattern of `x` (after rounding `x` to f32). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/** The f32 whose bit pattern is `bits`. */
export function f32FromBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** Round `x` (as an f32) to bfloat16; returns the 16-bit pattern. */
export function f32ToBf16Bits(x: number): number {
  return bitsToBf16(f32Bits(x));
}

function bitsToBf16(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x0040) & 0xffff; // NaN: keep sign, make quiet
  // Adding 0x7fff plus the lowest kept bit rounds to nearest, ties to even; a carry out of the
  // mantissa bumps the exponent, which is also right (up to and including overflow to infinity).
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The f32 value of the bfloat16 pattern `h` (exact). */
export function bf16BitsToF32(h: number): number {
  return f32FromBits((h & 0xffff) << 16);
}

/** `x` rounded to the nearest bfloat16, as a number. */
export function roundToBf16(x: number): number {
  return bf16BitsToF32(f32ToBf16Bits(x));
}

/** Round `x` (as an f32) to IEEE binary16; returns the 16-bit pattern. */
export function f32ToF16Bits(x: number): number {
  return bitsToF16(f32Bits(x));
}

function bitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const e = (b >>> 23) & 0xff;
  let m = b & 0x7fffff;
  if (e === 0xff) return m === 0 ? sign | 0x7c00 : sign | 0x7e00 | (m >>> 13); // Inf / quiet NaN
  const exp = e - 127 + 15; // biased binary16 exponent
  if (exp >= 31) return sign | 0x7c00; // |x| >= 2^16: overflow
  if (exp <= 0) {
    // Subnormal result (or zero): units of 2^-24. Below 2^-25 everything rounds to zero.
    if (exp < -10) return sign;
    m |= 0x800000; // implicit leading 1 (f32 subnormals land in the branch above)
    const shift = 14 - exp; // 14..24
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++; // may become the smallest normal: right
    return sign | half;
  }
  let half = sign | (exp << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++; // carry into exponent is right, up to Inf
  return half;
}

/** The f32 value of the binary16 pattern `h` (exact). */
export function f16BitsToF32(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return f32FromBits(sign | 0x7f800000 | (m << 13)); // Inf / NaN (payload kept)
  if (e !== 0) return f32FromBits(sign | ((e - 15 + 127) << 23) | (m << 13));
  // Zero or subnormal: m * 2^-24, exact in f32.
  const v = m * 2 ** -24;
  return sign !== 0 ? -v : v;
}

/** `x` rounded to the nearest binary16 value, as a number. */
export function roundToF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

// ---- array versions ----

/** dst[i] = bf16(src[i]) for i < src.length. */
export function encodeBf16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const n = src.length;
  for (let i = 0; i < n; i++) dst[i] = bitsToBf16(bits[i]!);
}

/** dst[i] = f32(src[i]) for i < src.length. */
export function decodeBf16(src: Uint16Array, dst: Float32Array): void {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  const n = src.length;
  for (let i = 0; i < n; i++) out[i] = src[i]! << 16;
}

/** dst[i] = f16(src[i]) for i < src.length. */
export function encodeF16(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const n = src.length;
  for (let i = 0; i < n; i++) dst[i] = bitsToF16(bits[i]!);
}

let f16Table: Float32Array | undefined;

/** dst[i] = f32(src[i]) for i < src.length (a 256 KiB lookup table, built on first use). */
export function decodeF16(src: Uint16Array, dst: Float32Array): void {
  let t = f16Table;
  if (!t) {
    t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32(h);
    f16Table = t;
  }
  const n = src.length;
  for (let i = 0; i < n; i++) dst[i] = t[src[i]!]!;
}
