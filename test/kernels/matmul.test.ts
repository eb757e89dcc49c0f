// Matrix products against a plain float64 reference, on shapes that are multiples of no tile, in
// both kernel builds; bitwise split invariance of gemmPacked; the adjoint identity of A -> A B^T.
import { describe, expect, it } from "vitest";
import { createNodeRuntime } from "../../src/node/runtime.js";
import type { Runtime } from "../../src/runtime/runtime.js";
import {
  gemmPacked,
  matmulAB,
  matmulABt,
  matmulABtNaive,
  matmulAtB,
  matmulScratchFloats,
  packB,
  packBt,
  packedFloats,
  transposeMatrix,
} from "../../src/kernels/matmul.js";
import { randn, rng } from "../helpers/random.js";

const builds: Array<[string, Runtime]> = [
  ["relaxed-simd", await createNodeRuntime()],
  ["simd", await createNodeRuntime({ prefer: "simd" })],
];

function put(rt: Runtime, data: ArrayLike<number>): number {
  const p = rt.heap.allocF32(data.length);
  rt.heap.f32(p, data.length).set(data);
  return p;
}
function get(rt: Runtime, ptr: number, n: number): Float32Array {
  return rt.heap.f32(ptr, n).slice();
}

type Layout = "ABt" | "AB" | "AtB";

/** Element (i, j) of a row-major matrix with `cols` columns. */
function at(x: ArrayLike<number>, cols: number, i: number, j: number): number {
  return x[i * cols + j];
}

/**
 * float64 reference C = c0 + op(A) op(B) and, per element, the scale sum |c0| + sum_k |a b| that
 * bounds the f32 rounding error.
 */
function reference(layout: Layout, a: Float32Array, b: Float32Array, c0: Float32Array | null, M: number, N: number, K: number) {
  const ref = new Float64Array(M * N);
  const scale = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = c0 ? c0[m * N + n] : 0;
      let t = Math.abs(s);
      for (let k = 0; k < K; k++) {
        const av = layout === "AtB" ? at(a, M, k, m) : at(a, K, m, k);
        const bv = layout === "ABt" ? at(b, K, n, k) : at(b, N, k, n);
        s += av * bv;
        t += Math.abs(av * bv);
      }
      ref[m * N + n] = s;
      scale[m * N + n] = t;
    }
  }
  return { ref, scale };
}

/** f32 summation of K products: error well within 1e-6 * sqrt(K) of the sum of magnitudes (eps = 6e-8). */
function expectClose(got: Float32Array, want: { ref: Float64Array; scale: Float64Array }, K: number, what: string): void {
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const tol = 1e-6 * Math.sqrt(Math.max(K, 1)) * want.scale[i] + 1e-30;
    const r = Math.abs(got[i] - want.ref[i]) / tol;
    if (!(r <= worst)) worst = r; // NaN lands here too
  }
  if (!(worst <= 1)) {
    let i = 0;
    for (; i < got.length; i++) if (!(Math.abs(got[i] - want.ref[i]) <= 1e-6 * Math.sqrt(Math.max(K, 1)) * want.scale[i] + 1e-30)) break;
    throw new Error(`${what}: element ${i} = ${got[i]}, reference ${want.ref[i]} (error / tolerance = ${worst})`);
  }
}

function runLayout(rt: Runtime, layout: Layout, a: number, b: number, c: number, M: number, N: number, K: number, acc: boolean): void {
  if (layout === "ABt") matmulABt(rt, a, b, c, M, N, K, acc);
  else if (layout === "AB") matmulAB(rt, a, b, c, M, N, K, acc);
  else matmulAtB(rt, a, b, c, M, N, K, acc);
}

const SIZES = [1, 3, 5, 8, 17, 130];
const EXTRA: Array<[number, number, number]> = [
  [64, 1024, 100],
  [7, 9, 1100], // K above the 1024 block
  [33, 24, 2],
  [4, 8, 4],
  [129, 17, 0], // empty sum
];

describe.each(builds)("matmul kernels (%s build)", (_name, rt) => {
  for (const layout of ["ABt", "AB", "AtB"] as const) {
    it(`${layout}: all M, N, K in {${SIZES.join(",")}} and extra shapes, overwrite and accumulate`, () => {
      const shapes: Array<[number, number, number]> = [];
      for (const M of SIZES) for (const N of SIZES) for (const K of SIZES) shapes.push([M, N, K]);
      shapes.push(...EXTRA);
      const r = rng(11);
      for (const [M, N, K] of shapes) {
        rt.heap.scope(() => {
          const a = randn(r, M * K), b = randn(r, N * K), c0 = randn(r, M * N);
          const pa = put(rt, a), pb = put(rt, b);
          const pc = put(rt, new Float32Array(M * N).fill(NaN));
          runLayout(rt, layout, pa, pb, pc, M, N, K, false);
          expectClose(get(rt, pc, M * N), reference(layout, a, b, null, M, N, K), K, `${layout} ${M}x${N}x${K}`);
          rt.heap.f32(pc, M * N).set(c0);
          runLayout(rt, layout, pa, pb, pc, M, N, K, true);
          expectClose(get(rt, pc, M * N), reference(layout, a, b, c0, M, N, K), K, `${layout} accumulate ${M}x${N}x${K}`);
        });
      }
    });
  }

  it("matmulABtNaive matches the float64 reference", () => {
    const r = rng(5);
    for (const [M, N, K] of [[1, 1, 1], [5, 17, 130], [17, 3, 8]] as const) {
      rt.heap.scope(() => {
        const a = randn(r, M * K), b = randn(r, N * K);
        const pa = put(rt, a), pb = put(rt, b), pc = rt.heap.allocF32(M * N);
        matmulABtNaive(rt, pa, pb, pc, M, N, K);
        expectClose(get(rt, pc, M * N), reference("ABt", a, b, null, M, N, K), K, `naive ${M}x${N}x${K}`);
      });
    }
  });

  it("packBt and packB lay out 8-column panels, zero-padded", () => {
    rt.heap.scope(() => {
      const N = 19, K = 6, r = rng(3);
      expect(packedFloats(N, K)).toBe(24 * K);
      expect(rt.k.packedFloats(N, K)).toBe(24 * K);
      const w = randn(r, N * K); // [N, K]
      const wt = new Float32Array(K * N); // [K, N]
      for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) wt[k * N + n] = w[n * K + k];
      const p1 = packBt(rt, put(rt, w), N, K);
      const p2 = packB(rt, put(rt, wt), K, N);
      const want = new Float32Array(packedFloats(N, K));
      for (let p = 0; p < 3; p++) for (let k = 0; k < K; k++) for (let j = 0; j < 8; j++) {
        const n = 8 * p + j;
        want[(p * K + k) * 8 + j] = n < N ? w[n * K + k] : 0;
      }
      expect(get(rt, p1.ptr, want.length)).toEqual(want);
      expect(get(rt, p2.ptr, want.length)).toEqual(want);
    });
  });

  it("transposeMatrix", () => {
    rt.heap.scope(() => {
      const R = 9, C = 6, x = randn(rng(2), R * C);
      const po = rt.heap.allocF32(R * C);
      transposeMatrix(rt, put(rt, x), R, C, po);
      const o = get(rt, po, R * C);
      for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) expect(o[j * R + i]).toBe(x[i * C + j]);
    });
  });

  it("gemmPacked honours lda / ldc and leaves the rest of C alone", () => {
    rt.heap.scope(() => {
      const M = 6, N = 11, K = 13, lda = 20, ldc = 15, r = rng(8);
      const aFull = randn(r, M * lda), w = randn(r, N * K);
      const a = new Float32Array(M * K);
      for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) a[m * K + k] = aFull[m * lda + k];
      const packed = packBt(rt, put(rt, w), N, K);
      const cInit = randn(r, M * ldc);
      const pc = put(rt, cInit);
      gemmPacked(rt, put(rt, aFull), packed, pc, M, false, lda, ldc);
      const cOut = get(rt, pc, M * ldc);
      const got = new Float32Array(M * N);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < ldc; n++) {
          if (n < N) got[m * N + n] = cOut[m * ldc + n];
          else expect(cOut[m * ldc + n]).toBe(cInit[m * ldc + n]);
        }
      }
      expectClose(got, reference("ABt", a, w, null, M, N, K), K, "gemmPacked strided");
    });
  });

  for (const [M, N, K] of [[37, 43, 1100], [130, 17, 130], [9, 64, 5]] as const) {
    it(`gemmPacked split over rows or panels is bitwise one call (${M}x${N}x${K})`, () => {
      rt.heap.scope(() => {
        const r = rng(M + N + K);
        const a = randn(r, M * K), w = randn(r, N * K), c0 = randn(r, M * N);
        const pa = put(rt, a);
        const packed = packBt(rt, put(rt, w), N, K);
        for (const acc of [0, 1]) {
          const whole = put(rt, c0);
          rt.k.gemmPacked(pa, K, packed.ptr, whole, N, M, N, K, acc);
          const want = get(rt, whole, M * N);
          // rows: [0, m1) and [m1, M) with m1 not a multiple of the 4-row tile
          for (const m1 of [1, 3, Math.floor(M / 2), M - 1]) {
            const pc = put(rt, c0);
            rt.k.gemmPacked(pa, K, packed.ptr, pc, N, m1, N, K, acc);
            rt.k.gemmPacked(pa + 4 * m1 * K, K, packed.ptr, pc + 4 * m1 * N, N, M - m1, N, K, acc);
            expect(get(rt, pc, M * N)).toEqual(want);
          }
          // panels: [0, p1) and [p1, panels)
          const panels = Math.ceil(N / 8);
          for (let p1 = 1; p1 < panels; p1++) {
            const pc = put(rt, c0);
            rt.k.gemmPacked(pa, K, packed.ptr, pc, N, M, 8 * p1, K, acc);
            rt.k.gemmPacked(pa, K, packed.ptr + 4 * p1 * K * 8, pc + 4 * 8 * p1, N, M, N - 8 * p1, K, acc);
            expect(get(rt, pc, M * N)).toEqual(want);
          }
          expectClose(want, reference("ABt", a, w, acc ? c0 : null, M, N, K), K, `gemmPacked ${M}x${N}x${K}`);
        }
      });
    });
  }

  it("adjoint identity of A -> A B^T: <U, A B^T> = <U B, A>", () => {
    const r = rng(21);
    for (const [M, N, K] of [[17, 130, 5], [64, 33, 100], [3, 8, 1100]] as const) {
      rt.heap.scope(() => {
        const a = randn(r, M * K), b = randn(r, N * K), u = randn(r, M * N);
        const pa = put(rt, a), pb = put(rt, b), pu = put(rt, u);
        const pab = rt.heap.allocF32(M * N), pub = rt.heap.allocF32(M * K);
        matmulABt(rt, pa, pb, pab, M, N, K); // [M, N]
        matmulAB(rt, pu, pb, pub, M, K, N); // U [M, N] * B [N, K] -> [M, K]
        const ab = get(rt, pab, M * N), ub = get(rt, pub, M * K);
        let lhs = 0, rhs = 0, mag = 0;
        for (let i = 0; i < M * N; i++) {
          lhs += u[i] * ab[i];
          mag += Math.abs(u[i] * ab[i]);
        }
        for (let i = 0; i < M * K; i++) rhs += ub[i] * a[i];
        expect(Math.abs(lhs - rhs)).toBeLessThan(1e-5 * Math.sqrt(Math.max(N, K)) * mag);
      });
    }
  });

  it("matmulScratchFloats covers every layout", () => {
    expect(rt.k.matmulScratchFloats(5, 17, 130)).toBe(matmulScratchFloats(5, 17, 130));
    expect(matmulScratchFloats(5, 17, 130)).toBe(24 * 130 + 5 * 130);
  });
});
