// Typed wrappers of the matrix-product kernels (assembly/matmul.ts). Pointers are byte offsets of f32
// buffers in rt.memory; sizes are element counts; layouts row-major.
//
// Letters: M rows of A and C, N columns of C, K the summed dimension. Weights are Hugging Face
// [out, in] = [N, K]: a linear layer y = x W^T is matmulABt(x, W), its VJP gx = gy W is matmulAB.
// For a weight used many times, pack it once (packBt) and call gemmPacked: packing per call costs
// 5-20% on 64-row products.
//
// Results are bitwise reproducible: each C[m, n] is summed over k in ascending order whatever the
// shape of the call, so gemmPacked split over row ranges or panel ranges (threads) equals one call.
import type { Runtime } from "../runtime/runtime.js";

/** Columns per packed panel. */
export const PANEL = 8;

/** Floats of a packed B with N columns and K rows: ceil(N / 8) panels of K x 8 (the last zero-padded). */
export function packedFloats(N: number, K: number): number {
  return Math.ceil(N / PANEL) * PANEL * K;
}

/** Scratch floats matmulABt, matmulAB and matmulAtB need: packed B, plus A transposed for matmulAtB. */
export function matmulScratchFloats(M: number, N: number, K: number): number {
  return packedFloats(N, K) + M * K;
}

/** A B packed for gemmPacked: `ptr` holds packedFloats(n, k) floats. */
export interface PackedMatrix {
  readonly ptr: number;
  /** Columns of the product (rows of a weight [out, in]). */
  readonly n: number;
  /** The summed dimension. */
  readonly k: number;
}

function checkSizes(what: string, M: number, N: number, K: number): void {
  for (const [name, v] of [["M", M], ["N", N], ["K", K]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`${what}: bad size ${name}=${v}`);
  }
  if (matmulScratchFloats(M, N, K) * 4 >= 2 ** 32) throw new Error(`${what}: ${M}x${K} * ${K}x${N} too large for wasm32`);
}

/**
 * Pack B given as [N, K] (a weight [out, in]) for C = A * B^T. dst: packedFloats(N, K) floats,
 * allocated on rt.heap (in the caller's scope) unless given. Returns the packed matrix.
 */
export function packBt(rt: Runtime, b: number, N: number, K: number, dst?: number): PackedMatrix {
  checkSizes("packBt", 0, N, K);
  const ptr = dst ?? rt.heap.allocF32(packedFloats(N, K));
  rt.k.packBt(b, N, K, ptr);
  return { ptr, n: N, k: K };
}

/** Pack B given as [K, N] for C = A * B. dst: packedFloats(N, K) floats, allocated unless given. */
export function packB(rt: Runtime, b: number, K: number, N: number, dst?: number): PackedMatrix {
  checkSizes("packB", 0, N, K);
  const ptr = dst ?? rt.heap.allocF32(packedFloats(N, K));
  rt.k.packB(b, K, N, ptr);
  return { ptr, n: N, k: K };
}

/**
 * C[M, N] (+)= A[M, K] * B where B was packed by packBt / packB.
 * a: rows `lda` floats apart (default K); c: rows `ldc` floats apart (default N).
 * For a part of the work (threads): rows m0.. -> a + 4*m0*lda, c + 4*m0*ldc, smaller M;
 * panels p0.. -> the raw kernel rt.k.gemmPacked with packed + 4*p0*K*8, c + 4*8*p0, N a multiple of 8
 * unless the range reaches the last column.
 */
export function gemmPacked(
  rt: Runtime,
  a: number,
  packed: PackedMatrix,
  c: number,
  M: number,
  accumulate = false,
  lda = packed.k,
  ldc = packed.n,
): void {
  checkSizes("gemmPacked", M, packed.n, packed.k);
  if (lda < packed.k || ldc < packed.n) throw new Error(`gemmPacked: lda=${lda} < K=${packed.k} or ldc=${ldc} < N=${packed.n}`);
  rt.k.gemmPacked(a, lda, packed.ptr, c, ldc, M, packed.n, packed.k, accumulate ? 1 : 0);
}

/** C[M, N] (+)= A[M, K] * B[N, K]^T (B a weight [out, in]); packs B into scratch on rt.heap. */
export function matmulABt(rt: Runtime, a: number, b: number, c: number, M: number, N: number, K: number, accumulate = false): void {
  checkSizes("matmulABt", M, N, K);
  rt.heap.scope(() => rt.k.matmulABt(a, b, c, M, N, K, rt.heap.allocF32(packedFloats(N, K)), accumulate ? 1 : 0));
}

/** C[M, N] (+)= A[M, K] * B[K, N]; packs B into scratch on rt.heap. */
export function matmulAB(rt: Runtime, a: number, b: number, c: number, M: number, N: number, K: number, accumulate = false): void {
  checkSizes("matmulAB", M, N, K);
  rt.heap.scope(() => rt.k.matmulAB(a, b, c, M, N, K, rt.heap.allocF32(packedFloats(N, K)), accumulate ? 1 : 0));
}

/** C[M, N] (+)= A[K, M]^T * B[K, N]; packs B and transposes A into scratch on rt.heap. */
export function matmulAtB(rt: Runtime, a: number, b: number, c: number, M: number, N: number, K: number, accumulate = false): void {
  checkSizes("matmulAtB", M, N, K);
  rt.heap.scope(() => rt.k.matmulAtB(a, b, c, M, N, K, rt.heap.allocF32(matmulScratchFloats(M, N, K)), accumulate ? 1 : 0));
}

/** Reference kernel: C[M, N] = A[M, K] * B[N, K]^T, one scalar f32 sum per element. Slow; for tests and benches. */
export function matmulABtNaive(rt: Runtime, a: number, b: number, c: number, M: number, N: number, K: number): void {
  checkSizes("matmulABtNaive", M, N, K);
  rt.k.matmulABtNaive(a, b, c, M, N, K);
}

/** dst[C, R] = src[R, C]^T. */
export function transposeMatrix(rt: Runtime, src: number, R: number, C: number, dst: number): void {
  checkSizes("transposeMatrix", R, C, 1);
  rt.k.transposeMatrix(src, R, C, dst);
}
