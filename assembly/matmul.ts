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

// C[4, 8] (+)= A[4, kc] * P[kc, 8]: A rows lda bytes apart, P a packed panel slice (32 bytes per k),
// C rows ldc bytes apart with nr (1..8) existing columns.
// @ts-ignore: decorator
@inline
function tile4x8(a: usize, lda: usize, pb: usize, c: usize, ldc: usize, kc: i32, nr: i32, accumulate: i32): void {
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
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
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
    pb += 32;
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
function tile3x8(a: usize, lda: usize, pb: usize, c: usize, ldc: usize, kc: i32, nr: i32, accumulate: i32): void {
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
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    const x0 = v128.load32_splat(a + o);
    acc00 = madd(x0, b0, acc00);
    acc01 = madd(x0, b1, acc01);
    const x1 = v128.load32_splat(a1 + o);
    acc10 = madd(x1, b0, acc10);
    acc11 = madd(x1, b1, acc11);
    const x2 = v128.load32_splat(a2 + o);
    acc20 = madd(x2, b0, acc20);
    acc21 = madd(x2, b1, acc21);
    pb += 32;
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
function tile2x8(a: usize, lda: usize, pb: usize, c: usize, ldc: usize, kc: i32, nr: i32, accumulate: i32): void {
  const c0 = c;
  const c1 = c + ldc;
  let acc00 = cLoad(c0, nr, accumulate, 0);
  let acc01 = cLoad(c0, nr, accumulate, 4);
  let acc10 = cLoad(c1, nr, accumulate, 0);
  let acc11 = cLoad(c1, nr, accumulate, 4);
  const a1 = a + lda;
  const end = <usize>kc << 2;
  for (let o: usize = 0; o < end; o += 4) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    const x0 = v128.load32_splat(a + o);
    acc00 = madd(x0, b0, acc00);
    acc01 = madd(x0, b1, acc01);
    const x1 = v128.load32_splat(a1 + o);
    acc10 = madd(x1, b0, acc10);
    acc11 = madd(x1, b1, acc11);
    pb += 32;
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
function tile1x8(a: usize, lda: usize, pb: usize, c: usize, ldc: usize, kc: i32, nr: i32, accumulate: i32): void {
  const c0 = c;
  let acc00 = cLoad(c0, nr, accumulate, 0);
  let acc01 = cLoad(c0, nr, accumulate, 4);
  const end = <usize>kc << 2;
  for (let o: usize = 0; o < end; o += 4) {
    const b0 = v128.load(pb);
    const b1 = v128.load(pb, 16);
    const x0 = v128.load32_splat(a + o);
    acc00 = madd(x0, b0, acc00);
    acc01 = madd(x0, b1, acc01);
    pb += 32;
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
  if (M <= 0 || N <= 0) return;
  const ldaB = <usize>lda << 2;
  const ldcB = <usize>ldc << 2;
  if (K <= 0) {
    if (!accumulate) for (let m = 0; m < M; m++) memory.fill(c + <usize>m * ldcB, 0, <usize>N << 2);
    return;
  }
  const panels = (N + 7) >> 3;
  const panelB = <usize>K << 5; // bytes per panel
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kc = min(KC, K - k0);
    const acc = k0 > 0 ? 1 : accumulate;
    for (let m0 = 0; m0 < M; m0 += MC) {
      const mc = min(MC, M - m0);
      const aBlock = a + <usize>m0 * ldaB + (<usize>k0 << 2);
      const cBlock = c + <usize>m0 * ldcB;
      for (let p = 0; p < panels; p++) {
        const nr = min(8, N - (p << 3));
        const pb = packed + <usize>p * panelB + (<usize>k0 << 5);
        const cp = cBlock + (<usize>p << 5);
        let m = 0;
        for (; m + MR <= mc; m += MR) {
          tile4x8(aBlock + <usize>m * ldaB, ldaB, pb, cp + <usize>m * ldcB, ldcB, kc, nr, acc);
        }
        const rest = mc - m;
        const am = aBlock + <usize>m * ldaB;
        const cm = cp + <usize>m * ldcB;
        if (rest == 3) tile3x8(am, ldaB, pb, cm, ldcB, kc, nr, acc);
        else if (rest == 2) tile2x8(am, ldaB, pb, cm, ldcB, kc, nr, acc);
        else if (rest == 1) tile1x8(am, ldaB, pb, cm, ldcB, kc, nr, acc);
      }
    }
  }
}

// Pack B given as [N, K] rows (a weight [out, in]) for C = A * B^T: packed[p][k][j] = B[8p + j, k].
// dst: packedFloats(N, K) floats. Full panels use 4x4 transposes; the last panel is zero-padded.
export function packBt(b: usize, N: i32, K: i32, dst: usize): void {
  const rowB = <usize>K << 2;
  const panels = (N + 7) >> 3;
  for (let p = 0; p < panels; p++) {
    const n0 = p << 3;
    const d = dst + <usize>p * (<usize>K << 5);
    if (n0 + 8 <= N) {
      const r0 = b + <usize>n0 * rowB;
      let k = 0;
      for (; k + 4 <= K; k += 4) {
        const o = <usize>k << 2;
        // rows n0..n0+3 -> lanes of the low half, rows n0+4..n0+7 -> high half
        const q = d + (<usize>k << 5);
        transpose4(r0 + o, rowB, q);
        transpose4(r0 + 4 * rowB + o, rowB, q + 16);
      }
      for (; k < K; k++) {
        const o = <usize>k << 2;
        const q = d + (<usize>k << 5);
        for (let j = 0; j < 8; j++) store<f32>(q + (<usize>j << 2), load<f32>(r0 + <usize>j * rowB + o));
      }
    } else {
      const nr = N - n0;
      for (let k = 0; k < K; k++) {
        const o = <usize>k << 2;
        const q = d + (<usize>k << 5);
        for (let j = 0; j < 8; j++) {
          store<f32>(q + (<usize>j << 2), j < nr ? load<f32>(b + <usize>(n0 + j) * rowB + o) : 0);
        }
      }
    }
  }
}

// 4 rows x 4 columns at src (rows rowB bytes apart) -> 4 vectors of 4 (one per column) stored 32 bytes apart.
// @ts-ignore: decorator
@inline
function transpose4(src: usize, rowB: usize, q: usize): void {
  const r0 = v128.load(src);
  const r1 = v128.load(src + rowB);
  const r2 = v128.load(src + 2 * rowB);
  const r3 = v128.load(src + 3 * rowB);
  const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5); // a0 b0 a1 b1
  const t1 = i32x4.shuffle(r2, r3, 0, 4, 1, 5); // c0 d0 c1 d1
  const t2 = i32x4.shuffle(r0, r1, 2, 6, 3, 7); // a2 b2 a3 b3
  const t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7); // c2 d2 c3 d3
  v128.store(q, i64x2.shuffle(t0, t1, 0, 2));
  v128.store(q, i64x2.shuffle(t0, t1, 1, 3), 32);
  v128.store(q, i64x2.shuffle(t2, t3, 0, 2), 64);
  v128.store(q, i64x2.shuffle(t2, t3, 1, 3), 96);
}

// Pack B given as [K, N] for C = A * B: packed[p][k][j] = B[k, 8p + j]. dst: packedFloats(N, K) floats.
export function packB(b: usize, K: i32, N: i32, dst: usize): void {
  const rowB = <usize>N << 2;
  const panels = (N + 7) >> 3;
  for (let p = 0; p < panels; p++) {
    const n0 = p << 3;
    const d = dst + <usize>p * (<usize>K << 5);
    const src = b + (<usize>n0 << 2);
    if (n0 + 8 <= N) {
      for (let k = 0; k < K; k++) {
        const s = src + <usize>k * rowB;
        const q = d + (<usize>k << 5);
        v128.store(q, v128.load(s));
        v128.store(q, v128.load(s, 16), 16);
      }
    } else {
      const nr = N - n0;
      for (let k = 0; k < K; k++) {
        const s = src + <usize>k * rowB;
        const q = d + (<usize>k << 5);
        for (let j = 0; j < 8; j++) store<f32>(q + (<usize>j << 2), j < nr ? load<f32>(s + (<usize>j << 2)) : 0);
      }
    }
  }
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
