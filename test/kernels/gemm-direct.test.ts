// gemmDirectBt (assembly/matmul.ts): C (+)= A * W^T for a few rows of A, read straight from W's
// stored bytes (F32, BF16, F16 rows [N, K]) instead of packed panels. It replaces packPanels +
// gemmPacked for decoding, so it is checked bit for bit against them on sizes that fit no tile (every
// M in 1..7, N and K around the 8-column panels and 4-step k blocks, sub-ranges of rows as a thread's
// slice, wide row strides, overwrite and accumulate), in both kernel builds; against a float64
// reference on awkward sizes (with an error just outside the bound shown to fail); by the adjoint
// identity of A -> A W^T; and gemmSlice (what every ParallelGemm thread runs) against the packed path
// at every M, so the switch between the two paths cannot change a result.
import { describe, expect, it } from "vitest";
import type { Runtime } from "../../src/runtime/runtime.js";
import { packedFloats } from "../../src/kernels/matmul.js";
import { bothBuilds, get, put } from "../helpers/kernel-io.js";
import { randn, rng } from "../helpers/random.js";

const builds = await bothBuilds();
const DTYPES = [
  { name: "F32", code: 0 },
  { name: "BF16", code: 1 },
  { name: "F16", code: 2 },
] as const;

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
/** Stored bits of x in dtype (BF16 truncated, F16 from the bit layout, tiny values flushed): finite data. */
function encode(dtype: number, x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if (dtype === 0) return b;
  if (dtype === 1) return b >>> 16;
  const sign = (b >>> 16) & 0x8000, e = ((b >>> 23) & 0xff) - 127 + 15;
  return e <= 0 ? sign : sign | (Math.min(e, 30) << 10) | ((b >>> 13) & 0x3ff);
}
/** The value of stored bits, from the formats' definitions (independent of the kernels). */
function decode(dtype: number, raw: number): number {
  if (dtype === 0) {
    u32[0] = raw;
    return f32[0]!;
  }
  if (dtype === 1) {
    u32[0] = raw << 16;
    return f32[0]!;
  }
  const sign = raw & 0x8000 ? -1 : 1, e = (raw >> 10) & 0x1f, m = raw & 0x3ff;
  return sign * (e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15));
}

/** W [rows, ld] stored in dtype at a new heap buffer; returns its pointer and the stored bits. */
function putWeight(rt: Runtime, dtype: number, values: ArrayLike<number>): { ptr: number; raw: Uint32Array } {
  const raw = Uint32Array.from(values, (x) => encode(dtype, x));
  const ptr = rt.heap.alloc(raw.length * (dtype === 0 ? 4 : 2));
  if (dtype === 0) new Uint32Array(rt.memory.buffer, ptr, raw.length).set(raw);
  else new Uint16Array(rt.memory.buffer, ptr, raw.length).set(raw);
  return { ptr, raw };
}

/** packPanels + gemmPacked on rows n0 .. n0 + N of W: the path gemmDirectBt replaces. */
function packed(rt: Runtime, a: number, lda: number, w: number, kind: number, ld: number, n0: number, c: number, ldc: number, M: number, N: number, K: number, acc: number): void {
  const p = rt.heap.allocF32(packedFloats(N, K));
  rt.k.packPanels(w, kind, ld, n0, n0 + N, K, p);
  rt.k.gemmPacked(a, lda, p, c, ldc, M, N, K, acc);
}

describe.each(builds)("gemmDirectBt (%s)", (_build, rt) => {
  for (const dt of DTYPES) {
    it(`${dt.name}: bitwise packPanels + gemmPacked for M 1..7, awkward N and K, row sub-ranges, strides, accumulate`, () => {
      const r = rng(17 + dt.code);
      let cases = 0;
      for (const [rows, K] of [[1, 1], [7, 3], [8, 4], [9, 5], [16, 13], [21, 8], [33, 37], [64, 2]] as const) {
        for (const extra of [0, 5]) {
          rt.heap.scope(() => {
            const ld = K + extra;
            const w = putWeight(rt, dt.code, randn(r, rows * ld));
            const ranges: Array<[number, number]> = [[0, rows]];
            if (rows > 8) ranges.push([8, rows], [3, rows - 2]);
            for (const [n0, n1] of ranges) {
              const N = n1 - n0;
              for (let M = 1; M <= 7; M++) {
                const lda = K + (extra ? 2 : 0), ldc = N + (extra ? 3 : 0);
                const a = put(rt, randn(r, M * lda));
                const c0 = randn(r, M * ldc);
                for (const acc of [0, 1]) {
                  const want = put(rt, c0), got = put(rt, c0);
                  packed(rt, a, lda, w.ptr, dt.code << 1, ld, n0, want, ldc, M, N, K, acc);
                  rt.k.gemmDirectBt(a, lda, w.ptr, dt.code << 1, ld, n0, got, ldc, M, N, K, acc);
                  const g = new Uint32Array(get(rt, got, M * ldc).buffer), e = new Uint32Array(get(rt, want, M * ldc).buffer);
                  for (let i = 0; i < g.length; i++) {
                    if (g[i] !== e[i]) throw new Error(`rows ${rows} [${n0}, ${n1}) K ${K} ld ${ld} M ${M} acc ${acc}: element ${i} (row ${Math.floor(i / ldc)}, column ${i % ldc}) differs`);
                  }
                  cases++;
                }
              }
            }
          });
        }
      }
      expect(cases).toBeGreaterThan(300);
    });
  }

  it("matches a float64 reference on tile-unfriendly sizes (and an error just outside the bound fails)", () => {
    const r = rng(5);
    for (const dt of DTYPES) {
      for (const [M, N, K] of [[1, 37, 1029], [3, 9, 67], [5, 131, 19], [2, 8, 4]] as const) {
        rt.heap.scope(() => {
          const w = putWeight(rt, dt.code, randn(r, N * K));
          const A = Float32Array.from(randn(r, M * K));
          const a = put(rt, A);
          const c = rt.heap.allocF32(M * N);
          rt.k.gemmDirectBt(a, K, w.ptr, dt.code << 1, K, 0, c, N, M, N, K, 0);
          const C = get(rt, c, M * N);
          for (let m = 0; m < M; m++) {
            for (let n = 0; n < N; n++) {
              let s = 0, mag = 0;
              for (let k = 0; k < K; k++) {
                const p = A[m * K + k]! * decode(dt.code, w.raw[n * K + k]!);
                s += p;
                mag += Math.abs(p);
              }
              // f32 summation over K terms: |error| <= K * 2^-24 * sum |terms| (a safe bound).
              const bound = K * 2 ** -24 * mag;
              expect(Math.abs(C[m * N + n]! - s), `${dt.name} ${M}x${N}x${K} [${m}, ${n}]`).toBeLessThanOrEqual(bound);
              // the check can fail: moved by twice the bound (the error itself is at most one), the value is outside
              if (m === 0 && n === 0) expect(Math.abs(C[0]! + 2.01 * bound - s)).toBeGreaterThan(bound);
            }
          }
        });
      }
    }
  });

  it("adjoint identity of A -> A W^T: <U, A W^T> = <U W, A> (float64 on the right)", () => {
    const r = rng(9);
    for (const dt of DTYPES) {
      rt.heap.scope(() => {
        const M = 3, N = 29, K = 45;
        const w = putWeight(rt, dt.code, randn(r, N * K));
        const A = Float32Array.from(randn(r, M * K)), U = randn(r, M * N);
        const c = rt.heap.allocF32(M * N);
        rt.k.gemmDirectBt(put(rt, A), K, w.ptr, dt.code << 1, K, 0, c, N, M, N, K, 0);
        const C = get(rt, c, M * N);
        let lhs = 0, rhs = 0, mag = 0;
        for (let i = 0; i < M * N; i++) lhs += U[i]! * C[i]!;
        for (let m = 0; m < M; m++) {
          for (let k = 0; k < K; k++) {
            let uw = 0;
            for (let n = 0; n < N; n++) uw += U[m * N + n]! * decode(dt.code, w.raw[n * K + k]!);
            rhs += uw * A[m * K + k]!;
            mag += Math.abs(uw * A[m * K + k]!);
          }
        }
        expect(Math.abs(lhs - rhs) / mag).toBeLessThan(1e-5);
      });
    }
  });

  it("gemmSlice: a streamed slice gives bitwise the packed result at every M (direct for few rows, packed above)", () => {
    const r = rng(21);
    for (const dt of DTYPES) {
      rt.heap.scope(() => {
        const N = 44, K = 35;
        const w = putWeight(rt, dt.code, randn(r, N * K));
        for (let M = 1; M <= 12; M++) {
          const a = put(rt, randn(r, M * K));
          const c0 = randn(r, M * N);
          for (const acc of [0, 1]) {
            const want = put(rt, c0), got = put(rt, c0);
            packed(rt, a, K, w.ptr, dt.code << 1, K, 8, want, N, M, N - 8, K, acc);
            const scratch = rt.heap.allocF32(packedFloats(N - 8, K));
            rt.k.gemmSlice(a, K, scratch, got, N, M, N - 8, K, acc, w.ptr, dt.code << 1, K, 8);
            expect(get(rt, got, M * N), `M ${M} acc ${acc}`).toEqual(get(rt, want, M * N));
          }
        }
      });
    }
  });
});

// BF16 panels (assembly/matmul.ts packPanelsBf16, gemmPackedBf16, gemmSlice's DT_BF16_PANELS): a
// BF16 weight's panels kept as 16-bit values, widened in registers. Checked for layout against the
// definition (slot j of panel p at k holds column 8p + [0 4 1 5 2 6 3 7][j]), bit for bit against the
// f32 panels of packPanels + gemmPacked on awkward sizes, against a float64 reference, and through
// gemmSlice for prepacked and packed-per-slice weights.
const BF16_PANELS = 3;
describe.each(builds)("BF16 panels (%s)", (_build, rt) => {
  // PACK_BT reads the weight [N, K] as B^T (forward products), PACK_B the weight [K, N] as B (the VJP's).
  for (const layout of [0, 1] as const) {
    const lname = layout ? "PACK_B" : "PACK_BT";
    // B's element (k, n) in a weight stored with rows ld apart.
    const at = (k: number, n: number, ld: number) => (layout ? k * ld + n : n * ld + k);
    it(`packPanelsBf16 (${lname}) puts every value where the panel layout says (sub-ranges, strides, zero padding)`, () => {
      const r = rng(31 + layout);
      for (const [N, K, extra] of [[1, 1, 0], [8, 8, 0], [13, 11, 3], [24, 17, 0], [37, 64, 5]] as const) {
        rt.heap.scope(() => {
          const ld = (layout ? N : K) + extra;
          const w = putWeight(rt, 1, randn(r, (layout ? K : N) * ld));
          for (const [n0, n1] of [[0, N], [N > 8 ? 8 : 0, N]] as const) {
            const panels = Math.ceil((n1 - n0) / 8);
            const dst = rt.heap.alloc(panels * K * 16);
            new Uint16Array(rt.memory.buffer, dst, panels * K * 8).fill(0xffff);
            rt.k.packPanelsBf16(w.ptr, layout, ld, n0, n1, K, dst);
            const got = new Uint16Array(rt.memory.buffer, dst, panels * K * 8);
            const order = [0, 4, 1, 5, 2, 6, 3, 7];
            for (let p = 0; p < panels; p++) {
              for (let k = 0; k < K; k++) {
                for (let j = 0; j < 8; j++) {
                  const col = n0 + 8 * p + order[j]!;
                  const want = col < n1 ? w.raw[at(k, col, ld)]! : 0;
                  if (got[(p * K + k) * 8 + j] !== want) throw new Error(`N ${N} K ${K} [${n0}, ${n1}): panel ${p} k ${k} slot ${j} is ${got[(p * K + k) * 8 + j]}, want ${want}`);
                }
              }
            }
          }
        });
      }
    });

    it(`gemmPackedBf16 (${lname}) is bitwise gemmPacked over the f32 panels of the same weight (M 1..9, awkward N, K, strides, accumulate)`, () => {
      const r = rng(37 + layout);
      let cases = 0;
      for (const [N, K] of [[1, 1], [7, 3], [8, 1100], [9, 5], [21, 8], [33, 37]] as const) {
        rt.heap.scope(() => {
          const ld = layout ? N : K;
          const w = putWeight(rt, 1, randn(r, N * K));
          const panels = rt.heap.alloc(Math.ceil(N / 8) * K * 16);
          rt.k.packPanelsBf16(w.ptr, layout, ld, 0, N, K, panels);
          for (let M = 1; M <= 9; M++) {
            const lda = K + 2, ldc = N + 3;
            const a = put(rt, randn(r, M * lda));
            const c0 = randn(r, M * ldc);
            for (const acc of [0, 1]) {
              const want = put(rt, c0), got = put(rt, c0), slice = put(rt, c0);
              packed(rt, a, lda, w.ptr, layout | (1 << 1), ld, 0, want, ldc, M, N, K, acc);
              rt.k.gemmPackedBf16(a, lda, panels, got, ldc, M, N, K, acc);
              // gemmSlice packs BF16 panels per slice (or reads B^T directly for 1-2 rows): the same C.
              rt.k.gemmSlice(a, lda, rt.heap.allocF32(packedFloats(N, K)), slice, ldc, M, N, K, acc, w.ptr, layout | (1 << 1), ld, 0);
              const e = new Uint32Array(get(rt, want, M * ldc).buffer);
              for (const [name, ptr] of [["gemmPackedBf16", got], ["gemmSlice", slice]] as const) {
                const g = new Uint32Array(get(rt, ptr, M * ldc).buffer);
                for (let i = 0; i < g.length; i++) if (g[i] !== e[i]) throw new Error(`${name}: N ${N} K ${K} M ${M} acc ${acc}: element ${i} differs`);
              }
              cases++;
            }
          }
        });
      }
      expect(cases).toBe(6 * 9 * 2);
    });
  }

  it("matches a float64 reference (and an error just outside the bound fails)", () => {
    const r = rng(41);
    for (const [M, N, K] of [[1, 37, 1029], [6, 131, 19], [4, 8, 4]] as const) {
      rt.heap.scope(() => {
        const w = putWeight(rt, 1, randn(r, N * K));
        const panels = rt.heap.alloc(Math.ceil(N / 8) * K * 16);
        rt.k.packPanelsBf16(w.ptr, 0, K, 0, N, K, panels);
        const A = Float32Array.from(randn(r, M * K));
        const c = rt.heap.allocF32(M * N);
        rt.k.gemmPackedBf16(put(rt, A), K, panels, c, N, M, N, K, 0);
        const C = get(rt, c, M * N);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let s = 0, mag = 0;
            for (let k = 0; k < K; k++) {
              const p = A[m * K + k]! * decode(1, w.raw[n * K + k]!);
              s += p;
              mag += Math.abs(p);
            }
            const bound = K * 2 ** -24 * mag;
            expect(Math.abs(C[m * N + n]! - s), `${M}x${N}x${K} [${m}, ${n}]`).toBeLessThanOrEqual(bound);
            if (m === 0 && n === 0) expect(Math.abs(C[0]! + 2.01 * bound - s)).toBeGreaterThan(bound);
          }
        }
      });
    }
  });

  it("gemmSlice over prepacked BF16 panels (DT_BF16_PANELS) and over a BF16 weight packed per slice: bitwise the f32 panels at every M", () => {
    const r = rng(43);
    rt.heap.scope(() => {
      const N = 44, K = 35;
      const w = putWeight(rt, 1, randn(r, N * K));
      const panels = rt.heap.alloc(Math.ceil(N / 8) * K * 16);
      rt.k.packPanelsBf16(w.ptr, 0, K, 0, N, K, panels);
      for (let M = 1; M <= 12; M++) {
        const a = put(rt, randn(r, M * K));
        const c0 = randn(r, M * N);
        for (const acc of [0, 1]) {
          const want = put(rt, c0);
          packed(rt, a, K, w.ptr, 1 << 1, K, 8, want, N, M, N - 8, K, acc);
          const pre = put(rt, c0), per = put(rt, c0);
          // A thread's slice: columns 8.. (whole panels), as ParallelGemm hands it.
          rt.k.gemmSlice(a, K, 0, pre, N, M, N - 8, K, acc, panels, BF16_PANELS << 1, K, 8);
          rt.k.gemmSlice(a, K, rt.heap.allocF32(packedFloats(N - 8, K)), per, N, M, N - 8, K, acc, w.ptr, 1 << 1, K, 8);
          expect(get(rt, pre, M * N), `prepacked M ${M} acc ${acc}`).toEqual(get(rt, want, M * N));
          expect(get(rt, per, M * N), `packed per slice M ${M} acc ${acc}`).toEqual(get(rt, want, M * N));
        }
      }
    });
  });
});
