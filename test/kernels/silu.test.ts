// SwiGLU gate kernels (y = silu(g) * u) against a float64 reference, central finite differences and
// the adjoint identity, on both builds, sizes that are not multiples of 4, and extreme gate values.
import { describe, expect, it } from "vitest";
import { siluMulForward, siluMulJvp, siluMulVjp } from "../../src/kernels/silu.js";
import { randn, rng } from "../helpers/random.js";
import { absDot64, centralDifference, dot64, dsilu64, dsiluScale64, maxScaledError, silu64, siluMulJvpRef, siluMulRef, siluMulVjpRef } from "../helpers/reference.js";
import { allocNaN, bothBuilds, get, put } from "../helpers/kernel-io.js";
import { itWithTorch } from "../helpers/torch.js";
import { runTorchJson } from "../helpers/torch-json.js";

const builds = await bothBuilds();

/** f(g, u) = silu(g) * u on the concatenation [g | u], for finite differences in both inputs. */
function siluMulConcat(gu: Float64Array): Float64Array {
  const n = gu.length / 2;
  return siluMulRef(gu.subarray(0, n), gu.subarray(n));
}

function concat(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const out = new Float64Array(a.length + b.length);
  out.set(a as ArrayLike<number>);
  out.set(b as ArrayLike<number>, a.length);
  return out;
}

for (const [build, rt] of builds) {
  describe(`siluMul kernels (${build})`, () => {
    for (const n of [1, 3, 17, 130, 4099]) {
      for (const gScale of [1, 4]) {
        it(`forward, JVP, VJP at n=${n}, g ~ N(0, ${gScale}^2)`, () => {
          rt.heap.scope(() => {
            const r = rng(n * 10 + gScale);
            const g = randn(r, n, gScale), u = randn(r, n), tg = randn(r, n), tu = randn(r, n), gy = randn(r, n);
            const pg = put(rt, g), pu = put(rt, u), ptg = put(rt, tg), ptu = put(rt, tu), pgy = put(rt, gy);
            const py = allocNaN(rt, n), pty = allocNaN(rt, n), pgg = allocNaN(rt, n), pgu = allocNaN(rt, n);

            siluMulForward(rt, pg, pu, py, n);
            const y = get(rt, py, n);
            expect(maxScaledError(y, siluMulRef(g, u))).toBeLessThan(1e-6);

            // JVP: analytic f64 reference, itself checked by central differences in (g, u)
            siluMulJvp(rt, pg, pu, ptg, ptu, pty, n);
            const ty = get(rt, pty, n);
            const jref = siluMulJvpRef(g, u, tg, tu);
            expect(maxScaledError(ty, jref.ty, jref.scale)).toBeLessThan(1e-6);
            const fd = centralDifference(siluMulConcat, concat(g, u), concat(tg, tu));
            expect(maxScaledError(jref.ty, fd, jref.scale)).toBeLessThan(1e-8);
            expect(maxScaledError(ty, fd, jref.scale)).toBeLessThan(1e-5);

            // VJP against its reference, and <gy, J t> = <J^T gy, t> with t = (tg, tu)
            siluMulVjp(rt, pg, pu, pgy, pgg, pgu, n);
            const gg = get(rt, pgg, n), gu = get(rt, pgu, n);
            const vref = siluMulVjpRef(g, u, gy);
            expect(maxScaledError(gg, vref.gg, vref.ggScale)).toBeLessThan(1e-6);
            expect(maxScaledError(gu, vref.gu)).toBeLessThan(1e-6);
            const lhs = dot64(gy, ty), rhs = dot64(gg, tg) + dot64(gu, tu);
            const scale = absDot64(gy, jref.scale) + absDot64(vref.ggScale, tg) + absDot64(gu, tu);
            expect(Math.abs(lhs - rhs)).toBeLessThanOrEqual(1e-5 * scale / 2);
          });
        });
      }
    }

    it("is accurate across the whole useful range of g (a sweep of [-87, 30])", () => {
      rt.heap.scope(() => {
        // for g << 0, silu(g) ~ g * exp(g): the relative error is the vectorised exp's own
        const n = 100_001;
        const g = new Float32Array(n).map((_, i) => -87 + (117 * i) / (n - 1));
        const u = new Float32Array(n).fill(1);
        const pg = put(rt, g), pu = put(rt, u), py = allocNaN(rt, n), pgg = allocNaN(rt, n), pgu = allocNaN(rt, n);
        siluMulForward(rt, pg, pu, py, n);
        siluMulVjp(rt, pg, pu, pu, pgg, pgu, n);
        const vref = siluMulVjpRef(g, u, u);
        // measured: 2.1e-7 and 2.7e-7 on both builds
        expect(maxScaledError(get(rt, py, n), siluMulRef(g, u))).toBeLessThan(4e-7);
        expect(maxScaledError(get(rt, pgu, n), vref.gu)).toBeLessThan(4e-7);
        expect(maxScaledError(get(rt, pgg, n), vref.gg, vref.ggScale)).toBeLessThan(5e-7);
      });
    });

    it("is finite and accurate for large |g| (no NaN or Inf), including the exp clamp edges", () => {
      rt.heap.scope(() => {
        const g = Float32Array.from([
          -3e38, -1e30, -1000, -200, -100, -89, -88.5, -88.4, -88.3, -88, -87.5, -87, -86.9, -80, -50, -30, -20, -17,
          -1.2785, -1e-30, -0, 0, 1e-30, 1e-3, 17, 20, 30, 50, 80, 86.9, 87, 87.5, 88, 89, 100, 1000, 1e30, 3e38,
        ]);
        const n = g.length, u = new Float32Array(n).fill(1), t = new Float32Array(n).fill(1);
        const pg = put(rt, g), pu = put(rt, u), pt = put(rt, t);
        const py = allocNaN(rt, n), pty = allocNaN(rt, n), pgg = allocNaN(rt, n), pgu = allocNaN(rt, n);
        siluMulForward(rt, pg, pu, py, n);
        siluMulJvp(rt, pg, pu, pt, pt, pty, n);
        siluMulVjp(rt, pg, pu, pt, pgg, pgu, n);
        const y = get(rt, py, n), ty = get(rt, pty, n), gg = get(rt, pgg, n), gu = get(rt, pgu, n);
        for (let i = 0; i < n; i++) {
          const gi = g[i];
          for (const v of [y[i], ty[i], gg[i], gu[i]]) expect(Number.isFinite(v), `g=${gi}`).toBe(true);
          // accurate to 1e-6 relative, or within 1e-35 absolute where the true value is below f32's normal range
          // (silu' is judged against the size of its terms: it crosses 0 near g = -1.2785)
          const near = (a: number, b: number, scale: number, what: string) =>
            expect(Math.abs(a - b), `${what} at g=${gi}: ${a} vs ${b}`).toBeLessThanOrEqual(1e-6 * scale + 1e-35);
          near(y[i], silu64(gi), Math.abs(silu64(gi)), "silu");
          near(gu[i], silu64(gi), Math.abs(silu64(gi)), "gu");
          near(gg[i], dsilu64(gi), dsiluScale64(gi), "gg");
          near(ty[i], dsilu64(gi) + silu64(gi), dsiluScale64(gi) + Math.abs(silu64(gi)), "ty");
        }
      });
    });

    it("outputs may alias inputs (y = g, gg = gy, ty = tg)", () => {
      rt.heap.scope(() => {
        const n = 17, r = rng(9);
        const g = randn(r, n, 3), u = randn(r, n), t = randn(r, n), t2 = randn(r, n);
        const pg = put(rt, g), pu = put(rt, u), pt = put(rt, t), pt2 = put(rt, t2);
        const py = allocNaN(rt, n), pty = allocNaN(rt, n), pgg = allocNaN(rt, n), pgu = allocNaN(rt, n);
        siluMulForward(rt, pg, pu, py, n);
        siluMulJvp(rt, pg, pu, pt, pt2, pty, n);
        siluMulVjp(rt, pg, pu, pt, pgg, pgu, n);
        const y = get(rt, py, n), ty = get(rt, pty, n), gg = get(rt, pgg, n), gu = get(rt, pgu, n);
        siluMulJvp(rt, pg, pu, pt, pt2, pt, n);
        expect(get(rt, pt, n)).toEqual(ty);
        rt.heap.f32(pt, n).set(t);
        siluMulVjp(rt, pg, pu, pt, pt, pgu, n);
        expect(get(rt, pt, n)).toEqual(gg);
        expect(get(rt, pgu, n)).toEqual(gu);
        const pg2 = put(rt, g);
        siluMulForward(rt, pg2, pu, pg2, n);
        expect(get(rt, pg2, n)).toEqual(y);
      });
    });
  });
}

// ------------------------------------------------------------------------------------------------
// transformers' Qwen3MLP gate, act_fn(gate) * up with act_fn = SiLU, in torch float32 with autograd

const TORCH_SCRIPT = String.raw`
import json, sys, torch
d = json.load(open(sys.argv[1]))
t = lambda k: torch.tensor(d[k], dtype=torch.float32)
g, u, tg, tu, gy = t("g"), t("u"), t("tg"), t("tu"), t("gy")
act_fn = torch.nn.SiLU()
f = lambda g, u: act_fn(g) * u
gr, ur = g.clone().requires_grad_(True), u.clone().requires_grad_(True)
y = f(gr, ur)
gg, gu = torch.autograd.grad(y, (gr, ur), gy)
_, ty = torch.autograd.functional.jvp(f, (g, u), (tg, tu))
json.dump({"y": y.detach().tolist(), "gg": gg.tolist(), "gu": gu.tolist(), "ty": ty.tolist()}, open(sys.argv[2], "w"))
`;

describe("siluMul against torch (SiLU(gate) * up in float32, autograd)", () => {
  itWithTorch("forward, VJP and JVP match torch at n=4099, including |g| up to 100", () => {
    const n = 4099, r = rng(99);
    const g = randn(r, n, 4), u = randn(r, n), tg = randn(r, n), tu = randn(r, n), gy = randn(r, n);
    g.set([-100, -88.5, -87.5, -30, -1.2785, 0, 30, 87.5, 100]);
    const ref = runTorchJson<{ y: number[]; gg: number[]; gu: number[]; ty: number[] }>(TORCH_SCRIPT, { g, u, tg, tu, gy });
    const jScale = siluMulJvpRef(g, u, tg, tu).scale, ggScale = siluMulVjpRef(g, u, gy).ggScale;
    for (const [build, rt] of builds) {
      rt.heap.scope(() => {
        const pg = put(rt, g), pu = put(rt, u), ptg = put(rt, tg), ptu = put(rt, tu), pgy = put(rt, gy);
        const py = allocNaN(rt, n), pty = allocNaN(rt, n), pgg = allocNaN(rt, n), pgu = allocNaN(rt, n);
        siluMulForward(rt, pg, pu, py, n);
        siluMulJvp(rt, pg, pu, ptg, ptu, pty, n);
        siluMulVjp(rt, pg, pu, pgy, pgg, pgu, n);
        // torch's values are within a few ulp of the exact ones; 1e-35 absolute (floor 1e-29 times 1e-6) where
        // they leave f32's normal range (g < -87: torch gives -3e-37 at g = -88.5, the kernel -0)
        expect(maxScaledError(get(rt, py, n), ref.y, undefined, 1e-29), build).toBeLessThan(1e-6);
        expect(maxScaledError(get(rt, pgu, n), ref.gu, undefined, 1e-29), build).toBeLessThan(1e-6);
        expect(maxScaledError(get(rt, pgg, n), ref.gg, ggScale, 1e-29), build).toBeLessThan(1e-6);
        expect(maxScaledError(get(rt, pty, n), ref.ty, jScale, 1e-29), build).toBeLessThan(1e-6);
      });
    }
  });
});
