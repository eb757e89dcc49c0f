// packPanels (assembly/matmul.ts): weights in their stored dtype (F32, BF16, F16) widened into 8-column
// panels, for both layouts (A W^T from [N, K] rows, A W from [K, N] rows), on sizes that are multiples
// of no tile, sub-ranges of columns (a thread's slice) and row strides wider than the matrix. The
// expected panels come from an independent decoder written here from the IEEE formats (not the
// project's src/safetensors/float16.ts), compared bit for bit, NaN payloads and signed zeros included.
// Also firstNonFinite, and a streamed GemmJob (pack + product per slice) against the resident one.
import { describe, expect, it } from "vitest";
import type { Runtime } from "../../src/runtime/runtime.js";
import { packedFloats } from "../../src/kernels/matmul.js";
import { SerialGemm, gemmSlices, runGemmSlices, type GemmJob } from "../../src/engine/parallel-gemm.js";
import { bothBuilds, get, put } from "../helpers/kernel-io.js";
import { randn, rng } from "../helpers/random.js";

const builds = await bothBuilds();
const DTYPES = [
  { name: "F32", code: 0, bytes: 4 },
  { name: "BF16", code: 1, bytes: 2 },
  { name: "F16", code: 2, bytes: 2 },
] as const;

const f32bits = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0]!;

/** The f32 bit pattern of a stored element, decoded from the format's definition. */
function expectedBits(dtype: number, raw: number): number {
  if (dtype === 0) return raw >>> 0;
  const sign = raw & 0x8000 ? -1 : 1;
  if (dtype === 1) {
    // bfloat16: the top half of an f32, so the bits are exact; the value is checked too.
    const e = (raw >> 7) & 0xff, m = raw & 0x7f;
    const bits = (raw << 16) >>> 0;
    if (e !== 0xff) {
      const v = e === 0 ? sign * m * 2 ** -133 : sign * (1 + m / 128) * 2 ** (e - 127);
      if (f32bits(v) !== bits && !(v === 0 && (bits & 0x7fffffff) === 0)) throw new Error("test decoder disagrees with itself");
    }
    return bits;
  }
  const e = (raw >> 10) & 0x1f, m = raw & 0x3ff;
  if (e === 0x1f) return ((raw & 0x8000) << 16 | 0x7f800000 | (m << 13)) >>> 0; // Inf / NaN, payload kept
  const v = e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
  return (f32bits(v) | ((raw & 0x8000) << 16)) >>> 0;
}

/** Random stored elements: for 16-bit dtypes every pattern (subnormals, Inf, NaN among them). */
function randomRaw(seed: number, dtype: number, n: number): Uint32Array {
  const r = rng(seed);
  const out = new Uint32Array(n);
  if (dtype === 0) {
    const f = Float32Array.from(randn(r, n));
    out.set(new Uint32Array(f.buffer));
    if (n > 3) out[3] = 0x7fc00123; // a NaN with a payload
    if (n > 5) out[5] = 0x80000000; // -0
  } else {
    for (let i = 0; i < n; i++) out[i] = Math.floor(r() * 65536);
  }
  return out;
}

/** Store raw elements at a new heap buffer; returns its pointer. */
function putRaw(rt: Runtime, dtype: number, raw: Uint32Array): number {
  const bytes = dtype === 0 ? 4 : 2;
  const p = rt.heap.alloc(raw.length * bytes);
  if (dtype === 0) new Uint32Array(rt.memory.buffer, p, raw.length).set(raw);
  else new Uint16Array(rt.memory.buffer, p, raw.length).set(raw);
  return p;
}

describe.each(builds)("packPanels (%s)", (_build, rt) => {
  for (const dt of DTYPES) {
    for (const layout of [0, 1]) {
      it(`${dt.name}, ${layout === 0 ? "A W^T from [N, K] rows" : "A W from [K, N] rows"}: every panel bit, zero padding, sub-ranges, wide rows`, () => {
        rt.heap.scope(() => {
          for (const [N, K] of [[1, 1], [7, 3], [8, 4], [9, 5], [21, 13], [33, 8], [16, 2], [71, 6]] as const) {
            for (const extra of [0, 3]) {
              // Source: layout 0 is [N rows, K] with row stride K + extra; layout 1 is [K rows, N] with stride N + extra.
              const rows = layout === 0 ? N : K, cols = layout === 0 ? K : N, ld = cols + extra;
              const raw = randomRaw(N * 100 + K + extra, dt.code, rows * ld);
              const src = putRaw(rt, dt.code, raw);
              const element = (k: number, n: number) => (layout === 0 ? raw[n * ld + k]! : raw[k * ld + n]!);
              const ranges: Array<[number, number]> = [[0, N]];
              if (N > 8) ranges.push([8, N], [0, 8]);
              if (N > 16) ranges.push([8, 16]);
              for (const [n0, n1] of ranges) {
                const floats = packedFloats(n1 - n0, K);
                const dst = rt.heap.allocF32(floats + 8);
                rt.heap.f32(dst, floats + 8).fill(NaN); // a skipped element or an overrun shows
                rt.k.packPanels(src, layout | (dt.code << 1), ld, n0, n1, K, dst);
                const got = new Uint32Array(rt.memory.buffer, dst, floats + 8);
                for (let p = 0; p < Math.ceil((n1 - n0) / 8); p++) {
                  for (let k = 0; k < K; k++) {
                    for (let j = 0; j < 8; j++) {
                      const n = n0 + 8 * p + j;
                      const want = n < n1 ? expectedBits(dt.code, element(k, n)) : 0;
                      const at = p * K * 8 + k * 8 + j;
                      if (got[at] !== want) throw new Error(`N ${N} K ${K} ld ${ld} [${n0}, ${n1}) panel ${p} k ${k} j ${j}: got ${got[at]!.toString(16)}, want ${want.toString(16)}`);
                    }
                  }
                }
                expect(Number.isNaN(rt.heap.f32(dst + 4 * floats, 1)[0]), "wrote past the packed panels").toBe(true);
              }
            }
          }
        });
      });
    }

    it(`${dt.name}: firstNonFinite finds the first Inf or NaN at any position, and none in finite data`, () => {
      rt.heap.scope(() => {
        const n = 37;
        const finite = Float32Array.from(randn(rng(3), n));
        const enc = (x: number) => (dt.code === 0 ? f32bits(x) : dt.code === 1 ? f32bits(x) >>> 16 : f16Finite(x));
        const base = Uint32Array.from(finite, (x) => enc(Math.max(-1000, Math.min(1000, x))));
        // The largest finite values are not flagged.
        base[1] = dt.code === 0 ? 0x7f7fffff : dt.code === 1 ? 0x7f7f : 0x7bff;
        base[2] = dt.code === 0 ? 0xff7fffff : dt.code === 1 ? 0xff7f : 0xfbff;
        expect(rt.k.firstNonFinite(putRaw(rt, dt.code, base), dt.code, n)).toBe(-1);
        const inf = dt.code === 0 ? 0x7f800000 : dt.code === 1 ? 0x7f80 : 0x7c00;
        const nan = dt.code === 0 ? 0xffc00001 : dt.code === 1 ? 0xffc1 : 0xfe01;
        for (const at of [0, 5, 7, 8, 15, 16, 33, n - 1]) {
          for (const bad of [inf, nan]) {
            const x = base.slice();
            x[at] = bad;
            if (at + 2 < n) x[at + 2] = inf; // a later one must not be reported instead
            expect(rt.k.firstNonFinite(putRaw(rt, dt.code, x), dt.code, n)).toBe(at);
          }
        }
      });
    });
  }

  it("a streamed GemmJob (each slice packs its panels, then multiplies) equals the resident one bitwise, for any slicing", () => {
    rt.heap.scope(() => {
      const r = rng(11);
      for (const dt of DTYPES) {
        for (const [M, N, K] of [[5, 37, 19], [13, 64, 29], [4, 9, 1]] as const) {
          const raw = randomRaw(M + N + K + dt.code, dt.code, N * K);
          if (dt.code !== 0) for (let i = 0; i < raw.length; i++) if (((raw[i]! >> (dt.code === 1 ? 7 : 10)) & (dt.code === 1 ? 0xff : 0x1f)) === (dt.code === 1 ? 0xff : 0x1f)) raw[i] = 0x3c00; // finite
          else for (let i = 0; i < raw.length; i++) if ((raw[i]! & 0x7f800000) === 0x7f800000) raw[i] = 0;
          const w = putRaw(rt, dt.code, raw);
          const a = put(rt, randn(r, M * K));
          for (const layout of [0, 1]) {
            // layout 0: W [N, K] for C = A W^T; layout 1: W seen as [K, N] for C = A W (same bytes, other product).
            const cols = layout === 0 ? N : K, inner = layout === 0 ? K : N;
            const a2 = layout === 0 ? a : put(rt, randn(r, M * inner));
            const resident = { ptr: rt.heap.allocF32(packedFloats(cols, inner)), n: cols, k: inner };
            rt.k.packPanels(w, layout | (dt.code << 1), layout === 0 ? K : N, 0, cols, inner, resident.ptr);
            const cRes = rt.heap.allocF32(M * cols);
            new SerialGemm(rt).run([{ a: a2, m: M, packed: resident, c: cRes }]);
            const want = get(rt, cRes, M * cols);
            for (const parts of [1, 2, 3, 5]) {
              const scratch = { ptr: rt.heap.allocF32(packedFloats(cols, inner)), n: cols, k: inner };
              const c = rt.heap.allocF32(M * cols);
              const job: GemmJob = { a: a2, m: M, packed: scratch, pack: { src: w, kind: layout | (dt.code << 1), ld: layout === 0 ? K : N }, c };
              for (let part = 0; part < parts; part++) runGemmSlices(rt, gemmSlices([job], part, parts));
              expect(get(rt, c, M * cols)).toEqual(want);
            }
          }
        }
      }
    });
  });
});

/** The f16 bits of a finite value in range (round to nearest even through the bit layout). */
function f16Finite(x: number): number {
  const b = f32bits(x);
  const sign = (b >>> 16) & 0x8000;
  const e = ((b >>> 23) & 0xff) - 127 + 15;
  if (e <= 0) return sign; // tiny: zero is enough for this test's data
  return sign | (e << 10) | ((b >>> 13) & 0x3ff);
}
