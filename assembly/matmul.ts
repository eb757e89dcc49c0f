// Matrix products on f32, one packed-panel micro-kernel behind every layout (XNNPACK style).
//
// Letters: M rows of A and C, N columns of C, K the summed dimension. Weights are Hugging Face
// [out, in] = [N, K], so a linear layer is C = A * B^T; its VJP is gx = gy * W (C = A * B) and the
// weight gradient would be gy^T * x (C = A^T * B).
//
// Packed B: 8-column panels, packed[p][k][j] = B[k, 8p + j] (B seen as [K, N]), the last panel
// zero-padded; panel p starts at float p * K * 8. packedFloats(N, K) floats in all.
//
// gemmPacked keeps a tile of 4 rows x 8 columns of C in registers (8 accumulators, 2 vectors of B,
// 4 broadcast A values = 14 of the ~15 xmm registers V8 allocates) and walks k with two loads of B,
// four v128.load32_splat of A and eight madd (fma.ts) per step. On the 2-core EPYC box (family 26)
// that ran at about 60 GFLOP/s with relaxed FMA and 55 with mul + add on one thread
// (bench/results/matmul.md).
// A 5 x 8 tile, which the prototypes in PERF-NOTES used with FMA, spilled in this code shape (V8 issues
// the iteration's 7 loads first: 10 + 2 + 5 live vectors) and fell to 26 GFLOP/s, so both builds use 4 x 8.
// Rows past a multiple of 4 take a 3-, 2- or 1-row tile; columns past a multiple of 8 read the
// zero-padded panel and store only the existing lanes, after the k loop (no branches inside it).
//
// Every output element is computed the same way whatever tile covers it: acc = (accumulate ? C : 0),
// then acc = madd(A[m,k], B[k,n], acc) for k = 0, 1, ..., K-1 (K blocks store and reload acc as f32,
// which is exact). So splitting a call over row ranges or panel ranges (threads) gives bitwise the same C.
import { madd } from "./fma";

/** Rows per register tile. */
const MR: i32 = 4;
/** Rows of A per cache block (a multiple of MR): MC x KC floats of A stay in L2 while panels stream by. */
const MC: i32 = MR * 16;
/** Summed-dimension block: a panel slice is KC x 8 floats (32 KiB). */
const KC: i32 = 1024;

/** Floats of a packed B with N columns and K rows: ceil(N / 8) panels of K x 8. */
export function packedFloats(N: i32, K: i32): i32 {
  return ((N + 7) >> 3) * 8 * K;
}

// Partial accumulator load / store for the last panel when N is not a multiple of 8: lanes
// [off, off + 4) of an 8-column row, of which only nr - off exist. Outside the k loop.
// @ts-ignore: decorator
@inline
function cLoad(p: usize, nr: i32, accumulate: i32, off: i32): v128 {
  if (!accumulate) return f32x4.splat(0);
  const n = nr - off;
  const q = p + (<usize>off << 2);
  if (n >= 4) return v128.load(q);
  let v = f32x4.splat(0);
  if (n > 0) v = f32x4.replace_lane(v, 0, load<f32>(q));
  if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(q, 4));
  if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(q, 8));
  return v;
}

// @ts-ignore: decorator
@inline
function cStore(p: usize, v: v128, nr: i32, off: i32): void {
  const n = nr - off;
  const q = p + (<usize>off << 2);
  if (n >= 4) {
    v128.store(q, v);
    return;
  }
  if (n > 0) store<f32>(q, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(q, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(q, f32x4.extract_lane(v, 2), 8);
}

// Columns 0..3 and 4..7 of a panel's row k at pb: f32 panels hold them as two vectors (32 bytes per
// k); BF16 panels (packPanelsBf16) as one vector of eight 16-bit values in the order c0 c4 c1 c5 c2 c6
// c3 c7, so each 32-bit lane holds (c_j, c_j+4) and one shift or one mask gives four f32 (a BF16 is the
// high half of its f32). `bf` is a constant at every call, so each build of a tile has one kind of load.
// @ts-ignore: decorator
@inline
function panelLo(pb: usize, bf: bool): v128 {
  return bf ? i32x4.shl(v128.load(pb), 16) : v128.load(pb);
}
// @ts-ignore: decorator
@inline
function panelHi(pb: usize, bf: bool): v128 {
  return bf ? v128.and(v128.load(pb), i32x4.splat(0xffff0000)) : v128.load(pb, 16);
}

// C[4, 8] (+)= A[4, kc] * P[kc, 8]: A rows lda bytes apart, P a packed panel slice (32 bytes per k),
// C rows ldc bytes apart with nr (1..8) existing columns.
// @ts-ignore: decorator
@inline
function tile4x8(a: usize, lda: usize, pb: usize, c: usize, ldc: usize, kc: i32, nr: i32, accumulate: i32, bf: bool): void {
  const c0 = c;
  const c1 = c + ldc;
  const c2 = c + 2 * ldc;
  const c3 = c + 3 * ldc;
  let acc00 = cLoad(c0, nr, accumulate, 0);
  let acc01 = cLoad(c0, nr, accumulate, 4);
  let acc10 = cLoad(c1, nr, accumulate, 0);
  let acc11 = cLoad(c1, nr, accumulate, 4);
  let acc20 = cLoad(c2, nr, accumulate, 0);
  let acc21 = cLoad(c2, nr, accumulate, 4);
  let acc30 = cLoad(c3, nr, accumulate, 0);
  let acc31 = cLoad(c3, nr, accumulate, 4);
  const a1 = a + lda;
  const a2 = a + 2 * lda;
  const a3 = a + 3 * lda;
  const end = <usize>kc << 2;
  for (let o: usize = 0; o < end; o += 4) {
    const b0 = panelLo(pb, bf);
    const b1 = panelHi(pb, bf);
    const x0 = v128.load32_splat(a + o);
    acc00 = madd(x0, b0, acc00);
    acc01 = madd(x0, b1, acc01);
    const x1 = v128.load32_splat(a1 + o);
    acc10 = madd(x1, b0, acc10);
    acc11 = madd(x1, b1, acc11);
    const x2 = v128.load32_splat(a2 + o);
    acc20 = madd(x2, b0, acc20);
    acc21 = madd(x2, b1, acc21);
    const x3 = v128.load32_splat(a3 + o);
    acc30 = madd(x3, b0, acc30);
    acc31 = madd(x3, b1, acc31);
    pb += bf ? 16 : 32;
  }
  cStore(c0, acc00, nr, 0);
  cStore(c0, acc01, nr, 4);
  cStore(c1, acc10, nr, 0);
  cStore(c1, acc11, nr, 4);
  cStore(c2, acc20, nr, 0);
  cStore(c2, acc21, nr, 4);
  cStore(c3, acc30, nr, 0);
  cStore(c3, acc31, nr, 4);
}

// C[3, 8] (+)= A[3, kc] * P[kc, 8]: A rows lda bytes apart, P a packed panel slice (32 bytes per k),
// C rows ldc bytes apart with nr (1..8) existing columns.
// @ts-ignore: decorator
@inline
function tile3x8(a: usize, lda: usize, pb: usize, c: usize, ldc: usize, kc: i32, nr: i32, accumulate: i32, bf: bool): void {
  const c0 = c;
  const c1 = c + ldc;
  const c2 = c + 2 * ldc;
  let acc00 = cLoad(c0, nr, accumulate, 0);
  let acc01 = cLoad(c0, nr, accumulate, 4);
  let acc10 = cLoad(c1, nr, accumulate, 0);
  let acc11 = cLoad(c1, nr, accumulate, 4);
  let acc20 = cLoad(c2, nr, accumulate, 0);
  let acc21 = cLoad(c2, nr, accumulate, 4);
  const a1 = a + lda;
  const a2 = a + 2 * lda;
  const end = <usize>kc << 2;
  for (let o: usize = 0; o < end; o += 4) {
    const b0 = panelLo(pb, bf);
    const b1 = panelHi(pb, bf);
    const x0 = v128.load32_splat(a + o);
    acc00 = madd(x0, b0, acc00);
    acc01 = madd(x0, b1, acc01);
    const x1 = v128.load32_splat(a1 + o);
    acc10 = madd(x1, b0, acc10);
    acc11 = madd(x1, b1, acc11);
    const x2 = v128.load32_splat(a2 + o);
    acc20 = madd(x2, b0, acc20);
    acc21 = madd(x2, b1, acc21);
    pb += bf ? 16 : 32;
  }
  cStore(c0, acc00, nr, 0);
  cStore(c0, acc01, nr, 4);
  cStore(c1, acc10, nr, 0);
  cStore(c1, acc11, nr, 4);
  cStore(c2, acc20, nr, 0);
  cStore(c2, acc21, nr, 4);
}

// C[2, 8] (+)= A[2, kc] * P[kc, 8]: A rows lda bytes apart, P a packed panel slice (32 bytes per k),
// C rows ldc bytes apart with nr (1..8) existing columns.
// @ts-ignore: decorator
@inline
function tile2x8(a: usize, lda: usize, pb: usize, c: usize, ldc: usize, kc: i32, nr: i32, accumulate: i32, bf: bool): void {
  const c0 = c;
  const c1 = c + ldc;
  let acc00 = cLoad(c0, nr, accumulate, 0);
  let acc01 = cLoad(c0, nr, accumulate, 4);
  let acc10 = cLoad(c1, nr, accumulate, 0);
  let acc11 = cLoad(c1, nr, accumulate, 4);
  const a1 = a + lda;
  const end = <usize>kc << 2;
  for (let o: usize = 0; o < end; o += 4) {
    const b0 = panelLo(pb, bf);
    const b1 = panelHi(pb, bf);
    const x0 = v128.load32_splat(a + o);
    acc00 = madd(x0, b0, acc00);
    acc01 = madd(x0, b1, acc01);
    const x1 = v128.load32_splat(a1 + o);
    acc10 = madd(x1, b0, acc10);
    acc11 = madd(x1, b1, acc11);
    pb += bf ? 16 : 32;
  }
  cStore(c0, acc00, nr, 0);
  cStore(c0, acc01, nr, 4);
  cStore(c1, acc10, nr, 0);
  cStore(c1, acc11, nr, 4);
}

// C[1, 8] (+)= A[1, kc] * P[kc, 8]: A rows lda bytes apart, P a packed panel slice (32 bytes per k),
// C rows ldc bytes apart with nr (1..8) existing columns.
// @ts-ignore: decorator
@inline
function tile1x8(a: usize, lda: usize, pb: usize, c: usize, ldc: usize, kc: i32, nr: i32, accumulate: i32, bf: bool): void {
  const c0 = c;
  let acc00 = cLoad(c0, nr, accumulate, 0);
  let acc01 = cLoad(c0, nr, accumulate, 4);
  const end = <usize>kc << 2;
  for (let o: usize = 0; o < end; o += 4) {
    const b0 = panelLo(pb, bf);
    const b1 = panelHi(pb, bf);
    const x0 = v128.load32_splat(a + o);
    acc00 = madd(x0, b0, acc00);
    acc01 = madd(x0, b1, acc01);
    pb += bf ? 16 : 32;
  }
  cStore(c0, acc00, nr, 0);
  cStore(c0, acc01, nr, 4);
}

// C[M, N] (+)= A[M, K] * B[K, N] with B packed (packB / packBt).
// a: A[0,0], rows lda floats apart; packed: panel 0 of B; c: C[0,0], rows ldc floats apart.
// accumulate != 0 adds into C, else C is overwritten. A thread may take a row range (offset a and c
// by m0 rows, smaller M) or a panel range (offset packed by p0*K*8 floats and c by 8*p0 floats, N
// a multiple of 8 unless the range ends at the last column): the result is bitwise the same.
export function gemmPacked(a: usize, lda: i32, packed: usize, c: usize, ldc: i32, M: i32, N: i32, K: i32, accumulate: i32): void {
  gemmPanels(a, lda, packed, c, ldc, M, N, K, accumulate, false);
}

// gemmPacked over BF16 panels (packPanelsBf16, 16 bytes per k): bitwise gemmPacked over the f32
// panels packPanels makes of the same weight (the same f32 values, summed in the same order).
export function gemmPackedBf16(a: usize, lda: i32, packed: usize, c: usize, ldc: i32, M: i32, N: i32, K: i32, accumulate: i32): void {
  gemmPanels(a, lda, packed, c, ldc, M, N, K, accumulate, true);
}

// @ts-ignore: decorator
@inline
function gemmPanels(a: usize, lda: i32, packed: usize, c: usize, ldc: i32, M: i32, N: i32, K: i32, accumulate: i32, bf: bool): void {
  if (M <= 0 || N <= 0) return;
  const ldaB = <usize>lda << 2;
  const ldcB = <usize>ldc << 2;
  if (K <= 0) {
    if (!accumulate) for (let m = 0; m < M; m++) memory.fill(c + <usize>m * ldcB, 0, <usize>N << 2);
    return;
  }
  const panels = (N + 7) >> 3;
  const panelB = <usize>K << (bf ? 4 : 5); // bytes per panel
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kc = min(KC, K - k0);
    const acc = k0 > 0 ? 1 : accumulate;
    for (let m0 = 0; m0 < M; m0 += MC) {
      const mc = min(MC, M - m0);
      const aBlock = a + <usize>m0 * ldaB + (<usize>k0 << 2);
      const cBlock = c + <usize>m0 * ldcB;
      for (let p = 0; p < panels; p++) {
        const nr = min(8, N - (p << 3));
        const pb = packed + <usize>p * panelB + (<usize>k0 << (bf ? 4 : 5));
        const cp = cBlock + (<usize>p << 5);
        let m = 0;
        for (; m + MR <= mc; m += MR) {
          tile4x8(aBlock + <usize>m * ldaB, ldaB, pb, cp + <usize>m * ldcB, ldcB, kc, nr, acc, bf);
        }
        const rest = mc - m;
        const am = aBlock + <usize>m * ldaB;
        const cm = cp + <usize>m * ldcB;
        if (rest == 3) tile3x8(am, ldaB, pb, cm, ldcB, kc, nr, acc, bf);
        else if (rest == 2) tile2x8(am, ldaB, pb, cm, ldcB, kc, nr, acc, bf);
        else if (rest == 1) tile1x8(am, ldaB, pb, cm, ldcB, kc, nr, acc, bf);
      }
    }
  }
}

// Packing: B into 8-column panels, from a weight in its stored dtype (f32, bf16 or f16), widened to
// f32 on the way (exactly: every bf16/f16 value is an f32). One kernel serves both layouts and every
// dtype, so a weight packed once at load (resident) and one packed per pass from streamed bytes give
// the same panels, hence bitwise the same products.
//
// kind = layout | dtype << 1:
//   layout PACK_BT (0): the source is B^T, [N, K] rows ld elements apart (a weight [out, in] for
//                       C = A * W^T: column n of B is weight row n);
//   layout PACK_B  (1): the source is B, [K, N] rows ld elements apart (a weight [out, in] seen as
//                       [K = out, N = in] for C = A * W, the VJP).
//   dtype DT_F32 (0), DT_BF16 (1), DT_F16 (2).
// gemmSlice also takes dtype DT_BF16_PANELS (3): the source is a BF16 weight already in
// packPanelsBf16's panels (layout PACK_BT), packed once when resident weights were read.
export const PACK_BT: i32 = 0;
export const PACK_B: i32 = 1;
export const DT_F32: i32 = 0;
export const DT_BF16: i32 = 1;
export const DT_F16: i32 = 2;
export const DT_BF16_PANELS: i32 = 3;

// 2^112: scales an f16's exponent/mantissa bits, placed as f32 bits, to its value (also subnormals).
const F16_SCALE: f32 = 5.192296858534828e33;

// @ts-ignore: decorator
@inline
function halfToFloat(h: u32): f32 {
  const em = (h & 0x7fff) << 13;
  const bits = (h & 0x7c00) == 0x7c00 ? em | 0x7f800000 : reinterpret<u32>(reinterpret<f32>(em) * F16_SCALE);
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

// Four 16-bit halfs, one per 32-bit lane (zero-extended), to f32: as halfToFloat, lane-wise.
// @ts-ignore: decorator
@inline
function halfToFloat4(h: v128): v128 {
  const em = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  const scaled = f32x4.mul(em, f32x4.splat(F16_SCALE));
  const special = i32x4.eq(v128.and(h, i32x4.splat(0x7c00)), i32x4.splat(0x7c00));
  const mag = v128.bitselect(v128.or(em, i32x4.splat(0x7f800000)), scaled, special);
  return v128.or(mag, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

// @ts-ignore: decorator
@inline
function elementAt(p: usize, dt: i32): f32 {
  if (dt == DT_F32) return load<f32>(p);
  const h = <u32>load<u16>(p);
  return dt == DT_BF16 ? reinterpret<f32>(h << 16) : halfToFloat(h);
}

// Four consecutive elements at p as f32.
// @ts-ignore: decorator
@inline
function widen4(p: usize, dt: i32): v128 {
  if (dt == DT_F32) return v128.load(p);
  const h = i32x4.extend_low_i16x8_u(v128.load64_zero(p));
  return dt == DT_BF16 ? i32x4.shl(h, 16) : halfToFloat4(h);
}

// Eight consecutive 16-bit elements at p as two f32 vectors, stored at q and q + 16.
// @ts-ignore: decorator
@inline
function widen8Store(p: usize, dt: i32, q: usize): void {
  if (dt == DT_F32) {
    v128.store(q, v128.load(p));
    v128.store(q, v128.load(p, 16), 16);
    return;
  }
  const x = v128.load(p);
  const lo = i32x4.extend_low_i16x8_u(x);
  const hi = i32x4.extend_high_i16x8_u(x);
  if (dt == DT_BF16) {
    v128.store(q, i32x4.shl(lo, 16));
    v128.store(q, i32x4.shl(hi, 16), 16);
  } else {
    v128.store(q, halfToFloat4(lo));
    v128.store(q, halfToFloat4(hi), 16);
  }
}

// Pack columns [n0, n1) of B (n0 a multiple of 8) from `src` (the element [0, 0] of the whole source
// matrix) into panels starting at dst: packed[p][k][j] = B[k, n0 + 8p + j] for k < K; columns from
// n1 up to the panel's end are zero. The slice of a thread is packed by that thread right before
// its product (src/engine/parallel-gemm.ts), the whole matrix by packBt / packB.
export function packPanels(src: usize, kind: i32, ld: i32, n0: i32, n1: i32, K: i32, dst: usize): void {
  const layout = kind & 1;
  const dt = kind >> 1;
  const eb: usize = dt == DT_F32 ? 4 : 2;
  const row: usize = <usize>ld * eb;
  const panelB = <usize>K << 5;
  for (let c0 = n0; c0 < n1; c0 += 8) {
    const d = dst + <usize>((c0 - n0) >> 3) * panelB;
    const nr = min(8, n1 - c0);
    if (layout == PACK_BT) {
      const r0 = src + <usize>c0 * row; // weight rows c0.. are the panel's columns
      let k = 0;
      if (nr == 8) {
        for (; k + 4 <= K; k += 4) {
          const o = <usize>k * eb;
          const q = d + (<usize>k << 5);
          transpose4Store(widen4(r0 + o, dt), widen4(r0 + row + o, dt), widen4(r0 + 2 * row + o, dt), widen4(r0 + 3 * row + o, dt), q);
          const r4 = r0 + 4 * row + o;
          transpose4Store(widen4(r4, dt), widen4(r4 + row, dt), widen4(r4 + 2 * row, dt), widen4(r4 + 3 * row, dt), q + 16);
        }
      }
      for (; k < K; k++) {
        const q = d + (<usize>k << 5);
        const o = <usize>k * eb;
        for (let j = 0; j < 8; j++) store<f32>(q + (<usize>j << 2), j < nr ? elementAt(r0 + <usize>j * row + o, dt) : 0);
      }
    } else {
      const s0 = src + <usize>c0 * eb; // column c0 of row 0
      if (dt != DT_F32 && c0 + 32 <= n1) {
        // Four panels at once: each k reads 64 contiguous bytes of the row (a whole cache line when
        // aligned) instead of 16 bytes of four lines, which made this layout 3x slower than PACK_BT.
        for (let k = 0; k < K; k++) {
          const s = s0 + <usize>k * row;
          const q = d + (<usize>k << 5);
          widen8Store(s, dt, q);
          widen8Store(s + 16, dt, q + panelB);
          widen8Store(s + 32, dt, q + 2 * panelB);
          widen8Store(s + 48, dt, q + 3 * panelB);
        }
        c0 += 24; // with the loop's += 8: the next four panels
        continue;
      }
      if (nr == 8) {
        for (let k = 0; k < K; k++) widen8Store(s0 + <usize>k * row, dt, d + (<usize>k << 5));
      } else {
        for (let k = 0; k < K; k++) {
          const s = s0 + <usize>k * row;
          const q = d + (<usize>k << 5);
          for (let j = 0; j < 8; j++) store<f32>(q + (<usize>j << 2), j < nr ? elementAt(s + <usize>j * eb, dt) : 0);
        }
      }
    }
  }
}

// BF16 panels for gemmPackedBf16 from a BF16 weight, in either of packPanels' layouts (`layout`):
// PACK_BT, the weight [N, K] (rows ld elements apart) read as B^T; PACK_B, the weight [K, N] read as B.
// Panel p (16 K bytes, from dst + p * 16 K) holds at k the 16-bit values of columns n0 + 8p + (0 4 1 5
// 2 6 3 7) of B at k (panelLo / panelHi's order), zero past n1. The same weight's f32 panels hold
// exactly these values widened, so products over either are bitwise equal; these take half the
// memory, a quarter of packPanels' writes, and resident weights can be packed once, at load.
export function packPanelsBf16(src: usize, layout: i32, ld: i32, n0: i32, n1: i32, K: i32, dst: usize): void {
  const row: usize = <usize>ld << 1;
  const panelB = <usize>K << 4;
  if (layout == PACK_B) {
    for (let c0 = n0; c0 < n1; c0 += 8) {
      const d = dst + <usize>((c0 - n0) >> 3) * panelB;
      const nr = min(8, n1 - c0);
      const s0 = src + (<usize>c0 << 1); // column c0 of row 0
      if (nr == 8) {
        // Row k's eight columns are contiguous: one load, one shuffle into the panel order.
        for (let k = 0; k < K; k++) {
          const v = v128.load(s0 + <usize>k * row);
          v128.store(d + (<usize>k << 4), i8x16.shuffle(v, v, 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15));
        }
      } else {
        for (let k = 0; k < K; k++) {
          const q = d + (<usize>k << 4);
          for (let j = 0; j < 8; j++) {
            const col = (j & 1) * 4 + (j >> 1);
            store<u16>(q + (<usize>j << 1), col < nr ? load<u16>(s0 + <usize>k * row + (<usize>col << 1)) : 0);
          }
        }
      }
    }
    return;
  }
  for (let c0 = n0; c0 < n1; c0 += 8) {
    const d = dst + <usize>((c0 - n0) >> 3) * panelB;
    const nr = min(8, n1 - c0);
    const r0 = src + <usize>c0 * row;
    let k = 0;
    if (nr == 8) {
      // Eight k at once: one 16-byte load per weight row, an 8 x 8 transpose of 16-bit values.
      for (; k + 8 <= K; k += 8) {
        const o = <usize>k << 1;
        const x0 = v128.load(r0 + o), x4 = v128.load(r0 + 4 * row + o);
        const x1 = v128.load(r0 + row + o), x5 = v128.load(r0 + 5 * row + o);
        const x2 = v128.load(r0 + 2 * row + o), x6 = v128.load(r0 + 6 * row + o);
        const x3 = v128.load(r0 + 3 * row + o), x7 = v128.load(r0 + 7 * row + o);
        // Interleave rows in the panel order c0 c4 c1 c5 c2 c6 c3 c7.
        const a0 = i16x8.shuffle(x0, x4, 0, 8, 1, 9, 2, 10, 3, 11); // (c0 c4) at k..k+3
        const a1 = i16x8.shuffle(x0, x4, 4, 12, 5, 13, 6, 14, 7, 15); // (c0 c4) at k+4..k+7
        const b0 = i16x8.shuffle(x1, x5, 0, 8, 1, 9, 2, 10, 3, 11);
        const b1 = i16x8.shuffle(x1, x5, 4, 12, 5, 13, 6, 14, 7, 15);
        const e0 = i16x8.shuffle(x2, x6, 0, 8, 1, 9, 2, 10, 3, 11);
        const e1 = i16x8.shuffle(x2, x6, 4, 12, 5, 13, 6, 14, 7, 15);
        const f0 = i16x8.shuffle(x3, x7, 0, 8, 1, 9, 2, 10, 3, 11);
        const f1 = i16x8.shuffle(x3, x7, 4, 12, 5, 13, 6, 14, 7, 15);
        // 32-bit pairs: (c0c4, c1c5) then (c2c6, c3c7) per k, a 4 x 4 transpose of 32-bit lanes.
        const q = d + (<usize>k << 4);
        transpose4x32Store(a0, b0, e0, f0, q);
        transpose4x32Store(a1, b1, e1, f1, q + 64);
      }
    }
    for (; k < K; k++) {
      const q = d + (<usize>k << 4);
      for (let j = 0; j < 8; j++) {
        const col = (j & 1) * 4 + (j >> 1); // slot j holds column 0 4 1 5 2 6 3 7
        store<u16>(q + (<usize>j << 1), col < nr ? load<u16>(r0 + <usize>col * row + (<usize>k << 1)) : 0);
      }
    }
  }
}

// Rows r0..r3 hold four 32-bit lanes each (lane i: k + i); store lane i of r0..r3 as 16 bytes at q + 16 i.
// @ts-ignore: decorator
@inline
function transpose4x32Store(r0: v128, r1: v128, r2: v128, r3: v128, q: usize): void {
  const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5);
  const t1 = i32x4.shuffle(r2, r3, 0, 4, 1, 5);
  const t2 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
  const t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
  v128.store(q, i64x2.shuffle(t0, t1, 0, 2));
  v128.store(q, i64x2.shuffle(t0, t1, 1, 3), 16);
  v128.store(q, i64x2.shuffle(t2, t3, 0, 2), 32);
  v128.store(q, i64x2.shuffle(t2, t3, 1, 3), 48);
}

// Four row vectors -> four column vectors stored 32 bytes apart (one k step of a panel each).
// @ts-ignore: decorator
@inline
function transpose4Store(r0: v128, r1: v128, r2: v128, r3: v128, q: usize): void {
  const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5); // a0 b0 a1 b1
  const t1 = i32x4.shuffle(r2, r3, 0, 4, 1, 5); // c0 d0 c1 d1
  const t2 = i32x4.shuffle(r0, r1, 2, 6, 3, 7); // a2 b2 a3 b3
  const t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7); // c2 d2 c3 d3
  v128.store(q, i64x2.shuffle(t0, t1, 0, 2));
  v128.store(q, i64x2.shuffle(t0, t1, 1, 3), 32);
  v128.store(q, i64x2.shuffle(t2, t3, 0, 2), 64);
  v128.store(q, i64x2.shuffle(t2, t3, 1, 3), 96);
}

// Pack an f32 B given as [N, K] rows (a weight [out, in]) for C = A * B^T. dst: packedFloats(N, K) floats.
export function packBt(b: usize, N: i32, K: i32, dst: usize): void {
  packPanels(b, PACK_BT, K, 0, N, K, dst);
}

// Pack an f32 B given as [K, N] for C = A * B. dst: packedFloats(N, K) floats.
export function packB(b: usize, K: i32, N: i32, dst: usize): void {
  packPanels(b, PACK_B, N, 0, N, K, dst);
}

// Index of the first non-finite element (Inf or NaN) of n elements of dtype dt at p, or -1. Weights are
// checked once as they are first read: a NaN weight is a broken checkpoint, named in the error.
export function firstNonFinite(p: usize, dt: i32, n: i32): i32 {
  let i = 0;
  if (dt == DT_F32) {
    const mask = i32x4.splat(0x7f800000);
    for (; i + 4 <= n; i += 4) {
      if (v128.any_true(i32x4.eq(v128.and(v128.load(p + (<usize>i << 2)), mask), mask))) break;
    }
    for (; i < n; i++) if ((load<u32>(p + (<usize>i << 2)) & 0x7f800000) == 0x7f800000) return i;
    return -1;
  }
  const e: u16 = dt == DT_BF16 ? 0x7f80 : 0x7c00;
  const mask = i16x8.splat(e);
  for (; i + 8 <= n; i += 8) {
    if (v128.any_true(i16x8.eq(v128.and(v128.load(p + (<usize>i << 1)), mask), mask))) break;
  }
  for (; i < n; i++) if ((load<u16>(p + (<usize>i << 1)) & e) == e) return i;
  return -1;
}

/** Scratch floats that matmulABt, matmulAB and matmulAtB need: a packed B plus (for A^T * B) A transposed. */
export function matmulScratchFloats(M: i32, N: i32, K: i32): i32 {
  return packedFloats(N, K) + M * K;
}

// C[M, N] (+)= A[M, K] * B[N, K]^T. scratch: >= packedFloats(N, K) floats (matmulScratchFloats covers it).
export function matmulABt(a: usize, b: usize, c: usize, M: i32, N: i32, K: i32, scratch: usize, accumulate: i32): void {
  packBt(b, N, K, scratch);
  gemmPacked(a, K, scratch, c, N, M, N, K, accumulate);
}

// C[M, N] (+)= A[M, K] * B[K, N]. scratch: >= packedFloats(N, K) floats.
export function matmulAB(a: usize, b: usize, c: usize, M: i32, N: i32, K: i32, scratch: usize, accumulate: i32): void {
  packB(b, K, N, scratch);
  gemmPacked(a, K, scratch, c, N, M, N, K, accumulate);
}

// C[M, N] (+)= A[K, M]^T * B[K, N]. scratch: >= packedFloats(N, K) + M * K floats (matmulScratchFloats):
// B packed, then A transposed to [M, K].
export function matmulAtB(a: usize, b: usize, c: usize, M: i32, N: i32, K: i32, scratch: usize, accumulate: i32): void {
  packB(b, K, N, scratch);
  const at = scratch + (<usize>packedFloats(N, K) << 2);
  transposeMatrix(a, K, M, at);
  gemmPacked(at, K, scratch, c, N, M, N, K, accumulate);
}

// dst[C, R] = src[R, C]^T, in 4x4 blocks with scalar edges.
export function transposeMatrix(src: usize, R: i32, C: i32, dst: usize): void {
  const srcRow = <usize>C << 2;
  const dstRow = <usize>R << 2;
  let r = 0;
  for (; r + 4 <= R; r += 4) {
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const s = src + <usize>r * srcRow + (<usize>c << 2);
      const x0 = v128.load(s);
      const x1 = v128.load(s + srcRow);
      const x2 = v128.load(s + 2 * srcRow);
      const x3 = v128.load(s + 3 * srcRow);
      const t0 = i32x4.shuffle(x0, x1, 0, 4, 1, 5);
      const t1 = i32x4.shuffle(x2, x3, 0, 4, 1, 5);
      const t2 = i32x4.shuffle(x0, x1, 2, 6, 3, 7);
      const t3 = i32x4.shuffle(x2, x3, 2, 6, 3, 7);
      const d = dst + <usize>c * dstRow + (<usize>r << 2);
      v128.store(d, i64x2.shuffle(t0, t1, 0, 2));
      v128.store(d + dstRow, i64x2.shuffle(t0, t1, 1, 3));
      v128.store(d + 2 * dstRow, i64x2.shuffle(t2, t3, 0, 2));
      v128.store(d + 3 * dstRow, i64x2.shuffle(t2, t3, 1, 3));
    }
    for (; c < C; c++) {
      for (let i = 0; i < 4; i++) store<f32>(dst + <usize>c * dstRow + (<usize>(r + i) << 2), load<f32>(src + <usize>(r + i) * srcRow + (<usize>c << 2)));
    }
  }
  for (; r < R; r++) {
    for (let c = 0; c < C; c++) store<f32>(dst + <usize>c * dstRow + (<usize>r << 2), load<f32>(src + <usize>r * srcRow + (<usize>c << 2)));
  }
}

// Reference: C[M, N] = A[M, K] * B[N, K]^T, one scalar f32 sum per element, k ascending.
export function matmulABtNaive(a: usize, b: usize, c: usize, M: i32, N: i32, K: i32): void {
  for (let m = 0; m < M; m++) {
    const ar = a + <usize>m * (<usize>K << 2);
    for (let n = 0; n < N; n++) {
      const br = b + <usize>n * (<usize>K << 2);
      let s: f32 = 0;
      for (let k = 0; k < K; k++) s += load<f32>(ar + (<usize>k << 2)) * load<f32>(br + (<usize>k << 2));
      store<f32>(c + (<usize>(m * N + n) << 2), s);
    }
  }
}

// ---- Small M: products straight from the stored weight (no packing) ----
//
// Decoding multiplies one row (or a few) by every weight of the model each step: packing a weight's
// panels (widening BF16 to f32 and writing 4 bytes per weight) costs more than the product itself.
// gemmDirectBt computes C (+)= A * B^T for B given as [N, K] rows in their stored dtype (a weight
// [out, in], packPanels' PACK_BT source), widening and transposing 8 rows x 4 k in registers exactly as
// packPanels does into memory, and then runs the same per-element sequence as gemmPacked:
// acc = (accumulate ? C : 0), acc = madd(A[m,k], B[k,n], acc) for k = 0, 1, ..., K-1. So it gives
// bitwise the panels' result, for any row or column split.

// Columns j0..j0+3 of B at k (weight rows j0.. at byte offset o), zero past nr: the edge path.
// @ts-ignore: decorator
@inline
function edgeColumns(r0: usize, row: usize, o: usize, dt: i32, j0: i32, nr: i32): v128 {
  let v = f32x4.splat(0);
  if (j0 < nr) v = f32x4.replace_lane(v, 0, elementAt(r0 + <usize>j0 * row + o, dt));
  if (j0 + 1 < nr) v = f32x4.replace_lane(v, 1, elementAt(r0 + <usize>(j0 + 1) * row + o, dt));
  if (j0 + 2 < nr) v = f32x4.replace_lane(v, 2, elementAt(r0 + <usize>(j0 + 2) * row + o, dt));
  if (j0 + 3 < nr) v = f32x4.replace_lane(v, 3, elementAt(r0 + <usize>(j0 + 3) * row + o, dt));
  return v;
}

// C[rows, 8] (+)= A[rows, K] * W[8 rows at r0, K]^T for rows 1 or 2 (A rows ldaB bytes apart, C rows
// ldcB bytes apart, nr existing columns). Two rows share each widened, transposed block of W.
// @ts-ignore: decorator
@inline
function directTile(a: usize, ldaB: usize, r0: usize, row: usize, dt: i32, eb: usize, c: usize, ldcB: usize, K: i32, nr: i32, accumulate: i32, two: bool): void {
  const a1 = a + ldaB;
  const c1 = c + ldcB;
  let p0 = cLoad(c, nr, accumulate, 0);
  let p1 = cLoad(c, nr, accumulate, 4);
  let q0 = two ? cLoad(c1, nr, accumulate, 0) : f32x4.splat(0);
  let q1 = two ? cLoad(c1, nr, accumulate, 4) : f32x4.splat(0);
  let k = 0;
  if (nr == 8) {
    const r4 = r0 + 4 * row;
    for (; k + 4 <= K; k += 4) {
      const o = <usize>k * eb;
      const x0 = widen4(r0 + o, dt);
      const x1 = widen4(r0 + row + o, dt);
      const x2 = widen4(r0 + 2 * row + o, dt);
      const x3 = widen4(r0 + 3 * row + o, dt);
      const y0 = widen4(r4 + o, dt);
      const y1 = widen4(r4 + row + o, dt);
      const y2 = widen4(r4 + 2 * row + o, dt);
      const y3 = widen4(r4 + 3 * row + o, dt);
      const t0 = i32x4.shuffle(x0, x1, 0, 4, 1, 5);
      const t1 = i32x4.shuffle(x2, x3, 0, 4, 1, 5);
      const t2 = i32x4.shuffle(x0, x1, 2, 6, 3, 7);
      const t3 = i32x4.shuffle(x2, x3, 2, 6, 3, 7);
      const u0 = i32x4.shuffle(y0, y1, 0, 4, 1, 5);
      const u1 = i32x4.shuffle(y2, y3, 0, 4, 1, 5);
      const u2 = i32x4.shuffle(y0, y1, 2, 6, 3, 7);
      const u3 = i32x4.shuffle(y2, y3, 2, 6, 3, 7);
      const ao = <usize>k << 2;
      // k
      let b0 = i64x2.shuffle(t0, t1, 0, 2);
      let b1 = i64x2.shuffle(u0, u1, 0, 2);
      let s = v128.load32_splat(a + ao);
      p0 = madd(s, b0, p0);
      p1 = madd(s, b1, p1);
      if (two) {
        s = v128.load32_splat(a1 + ao);
        q0 = madd(s, b0, q0);
        q1 = madd(s, b1, q1);
      }
      // k + 1
      b0 = i64x2.shuffle(t0, t1, 1, 3);
      b1 = i64x2.shuffle(u0, u1, 1, 3);
      s = v128.load32_splat(a + ao + 4);
      p0 = madd(s, b0, p0);
      p1 = madd(s, b1, p1);
      if (two) {
        s = v128.load32_splat(a1 + ao + 4);
        q0 = madd(s, b0, q0);
        q1 = madd(s, b1, q1);
      }
      // k + 2
      b0 = i64x2.shuffle(t2, t3, 0, 2);
      b1 = i64x2.shuffle(u2, u3, 0, 2);
      s = v128.load32_splat(a + ao + 8);
      p0 = madd(s, b0, p0);
      p1 = madd(s, b1, p1);
      if (two) {
        s = v128.load32_splat(a1 + ao + 8);
        q0 = madd(s, b0, q0);
        q1 = madd(s, b1, q1);
      }
      // k + 3
      b0 = i64x2.shuffle(t2, t3, 1, 3);
      b1 = i64x2.shuffle(u2, u3, 1, 3);
      s = v128.load32_splat(a + ao + 12);
      p0 = madd(s, b0, p0);
      p1 = madd(s, b1, p1);
      if (two) {
        s = v128.load32_splat(a1 + ao + 12);
        q0 = madd(s, b0, q0);
        q1 = madd(s, b1, q1);
      }
    }
  }
  for (; k < K; k++) {
    const o = <usize>k * eb;
    const b0 = edgeColumns(r0, row, o, dt, 0, nr);
    const b1 = edgeColumns(r0, row, o, dt, 4, nr);
    let s = v128.load32_splat(a + (<usize>k << 2));
    p0 = madd(s, b0, p0);
    p1 = madd(s, b1, p1);
    if (two) {
      s = v128.load32_splat(a1 + (<usize>k << 2));
      q0 = madd(s, b0, q0);
      q1 = madd(s, b1, q1);
    }
  }
  cStore(c, p0, nr, 0);
  cStore(c, p1, nr, 4);
  if (two) {
    cStore(c1, q0, nr, 0);
    cStore(c1, q1, nr, 4);
  }
}

// C[M, N] (+)= A[M, K] * B^T with B's rows n0 .. n0 + N - 1 of a [*, K] matrix at src in the dtype
// of `kind` (kind & 1 must be PACK_BT), ld elements apart: gemmPacked after packPanels(src, kind, ld,
// n0, n0 + N, K), bitwise, without the panels. A rows lda floats apart, C rows ldc floats apart.
export function gemmDirectBt(a: usize, lda: i32, src: usize, kind: i32, ld: i32, n0: i32, c: usize, ldc: i32, M: i32, N: i32, K: i32, accumulate: i32): void {
  const dt = kind >> 1;
  const eb: usize = dt == DT_F32 ? 4 : 2;
  const row: usize = <usize>ld * eb;
  const ldaB = <usize>lda << 2;
  const ldcB = <usize>ldc << 2;
  for (let c0 = 0; c0 < N; c0 += 8) {
    const nr = min(8, N - c0);
    const r0 = src + <usize>(n0 + c0) * row;
    const cc = c + (<usize>c0 << 2);
    let m = 0;
    for (; m + 2 <= M; m += 2) directTile(a + <usize>m * ldaB, ldaB, r0, row, dt, eb, cc + <usize>m * ldcB, ldcB, K, nr, accumulate, true);
    if (m < M) directTile(a + <usize>m * ldaB, ldaB, r0, row, dt, eb, cc + <usize>m * ldcB, ldcB, K, nr, accumulate, false);
  }
}

/**
 * Rows up to which gemmSlice multiplies streamed PACK_BT weights directly. Measured (bench/generate.ts,
 * one thread, BF16 [3072, 1024] and [1024, 3072], quiet machine): direct 0.62/0.78 ms against pack + gemm
 * 1.11/1.16 ms at M 1/2, but 1.47/1.56 against 1.21/1.29 at M 3/4 (the direct tile is 2 rows; packing
 * pays for itself from 3 rows on). That was f32 panels; BF16 panels pack about 5x faster, and the
 * crossover against them is printed by bench/generate.ts.
 */
const DIRECT_MAX_M: i32 = 2;

/** DIRECT_MAX_M for the host: a product of so few rows never touches its packed scratch. */
export function directMaxRows(): i32 {
  return DIRECT_MAX_M;
}

// One slice of a ParallelGemm dispatch (src/engine/parallel-gemm.ts SLICE_ARGS): C (+)= A * B over
// columns n0 .. n0 + N - 1 of a weight at src (or over panels already at `packed` when src is 0):
//   - BF16 panels (DT_BF16_PANELS, resident forward weights): multiplied where they are;
//   - a stored weight read as B^T, few rows: read directly (gemmDirectBt), nothing packed;
//   - BF16 (either layout): packed into BF16 panels at `packed` (packPanelsBf16: a quarter of the
//     bytes f32 panels write, about 5x faster to pack) and multiplied by gemmPackedBf16;
//   - otherwise packed into f32 panels (packPanels) and multiplied (gemmPacked).
// Every path gives bitwise the same C (the same f32 values summed in the same order).
export function gemmSlice(a: usize, lda: i32, packed: usize, c: usize, ldc: i32, M: i32, N: i32, K: i32, accumulate: i32, src: usize, kind: i32, ld: i32, n0: i32): void {
  if (src != 0) {
    const dt = kind >> 1;
    if (dt == DT_BF16_PANELS) {
      gemmPackedBf16(a, lda, src + <usize>(n0 >> 3) * (<usize>K << 4), c, ldc, M, N, K, accumulate);
      return;
    }
    if ((kind & 1) == PACK_BT && M <= DIRECT_MAX_M) {
      gemmDirectBt(a, lda, src, kind, ld, n0, c, ldc, M, N, K, accumulate);
      return;
    }
    if (dt == DT_BF16) {
      packPanelsBf16(src, kind & 1, ld, n0, n0 + N, K, packed);
      gemmPackedBf16(a, lda, packed, c, ldc, M, N, K, accumulate);
      return;
    }
    packPanels(src, kind, ld, n0, n0 + N, K, packed);
  }
  gemmPacked(a, lda, packed, c, ldc, M, N, K, accumulate);
}
