import { describe, expect, it } from "vitest";
import { createNodeRuntime } from "../../src/node/runtime.js";
import { randn, rng } from "../helpers/random.js";

const rt = await createNodeRuntime();

describe("runtime", () => {
  it("picks the relaxed-SIMD build where the engine validates it", () => {
    // Node >= 20 with the V8 flag set in test/setup.ts supports relaxed SIMD.
    expect(rt.build).toBe("relaxed-simd");
    expect(rt.k.isRelaxedBuild()).toBe(1);
  });
  it("falls back to plain SIMD on request", async () => {
    const rt2 = await createNodeRuntime({ prefer: "simd" });
    expect(rt2.k.isRelaxedBuild()).toBe(0);
  });
});

describe("elementwise kernels", () => {
  for (const n of [1, 3, 17, 130]) {
    it(`add, sub, scale, axpy, dot at n=${n}`, () => {
      rt.heap.scope(() => {
        const r = rng(n);
        const a = randn(r, n), b = randn(r, n);
        const pa = rt.heap.allocF32(n), pb = rt.heap.allocF32(n), po = rt.heap.allocF32(n);
        rt.heap.f32(pa, n).set(a);
        rt.heap.f32(pb, n).set(b);
        rt.k.add(pa, pb, po, n);
        let o = rt.heap.f32(po, n);
        for (let i = 0; i < n; i++) expect(o[i]).toBeCloseTo(a[i] + b[i], 6);
        rt.k.sub(pa, pb, po, n);
        o = rt.heap.f32(po, n);
        for (let i = 0; i < n; i++) expect(o[i]).toBeCloseTo(a[i] - b[i], 6);
        rt.k.scale(pa, -2.5, po, n);
        o = rt.heap.f32(po, n);
        for (let i = 0; i < n; i++) expect(o[i]).toBeCloseTo(-2.5 * a[i], 5);
        rt.heap.f32(po, n).set(b);
        rt.k.axpy(0.5, pa, po, n);
        o = rt.heap.f32(po, n);
        for (let i = 0; i < n; i++) expect(o[i]).toBeCloseTo(b[i] + 0.5 * a[i], 5);
        let d = 0;
        for (let i = 0; i < n; i++) d += Math.fround(a[i] * b[i]);
        expect(rt.k.dot(pa, pb, n)).toBeCloseTo(d, 9);
      });
    });
  }
  it("addRowVector and sumRows", () => {
    rt.heap.scope(() => {
      const rows = 5, cols = 17, r = rng(7);
      const x = randn(r, rows * cols), v = randn(r, cols);
      const px = rt.heap.allocF32(rows * cols), pv = rt.heap.allocF32(cols), po = rt.heap.allocF32(rows * cols), ps = rt.heap.allocF32(cols);
      rt.heap.f32(px, rows * cols).set(x);
      rt.heap.f32(pv, cols).set(v);
      rt.k.addRowVector(px, pv, po, rows, cols);
      rt.k.sumRows(px, ps, rows, cols);
      const o = rt.heap.f32(po, rows * cols), s = rt.heap.f32(ps, cols);
      for (let c = 0; c < cols; c++) {
        let sum = 0;
        for (let q = 0; q < rows; q++) {
          expect(o[q * cols + c]).toBeCloseTo(x[q * cols + c] + v[c], 6);
          sum += x[q * cols + c];
        }
        expect(s[c]).toBeCloseTo(sum, 5);
      }
    });
  });
});
