// RoPE kernels and tables: against a float64 rotate-half reference, exact-angle bounds, the adjoint
// identity and norm preservation on both builds, and (when the system python has torch) against
// transformers' rotary embedding re-implemented in torch float32.
import { describe, expect, it } from "vitest";
import { ropeForward, ropeJvp, ropeTables, ropeVjp } from "../../src/kernels/rope.js";
import { randn, rng } from "../helpers/random.js";
import { absDot64, centralDifference, dot64, maxScaledError, ropeAnglesRef, ropeRef, ropeScale } from "../helpers/reference.js";
import { allocNaN, bothBuilds, get, put } from "../helpers/kernel-io.js";
import { itWithTorch } from "../helpers/torch.js";
import { runTorchJson } from "../helpers/torch-json.js";

const builds = await bothBuilds();
const THETA = 1_000_000; // Qwen3's rope_theta

function positionsFor(T: number, offset: number): number[] {
  return Array.from({ length: T }, (_, t) => offset + t);
}

describe("ropeTables", () => {
  for (const headDim of [2, 6, 34, 128]) {
    for (const offset of [0, 1000, 40_000]) {
      it(`headDim=${headDim}, positions ${offset}..${offset + 16}, theta 1e6 and 1e4`, () => {
        for (const theta of [THETA, 10_000]) {
          const pos = positionsFor(17, offset);
          const { cos, sin } = ropeTables(pos, headDim, theta);
          const half = headDim / 2;
          expect(cos.length).toBe(17 * half);
          const exact = ropeAnglesRef(pos, headDim, theta, false);
          for (let k = 0; k < cos.length; k++) {
            // transformers rounds the exponent 2j/headDim, theta^exponent, inv_freq and pos * inv_freq to
            // f32: the angle's relative error is ln(theta) times the exponent's rounding error plus three
            // half-ulps; cos and sin move by that much of the angle, plus their own rounding
            const a = exact[k], j = k % half;
            const expErr = Math.abs(Math.fround((2 * j) / headDim) - (2 * j) / headDim);
            const bound = Math.abs(a) * (expErr * Math.log(theta) + 3.5 * 2 ** -24) + 2 ** -24;
            expect(Math.abs(cos[k] - Math.cos(a))).toBeLessThanOrEqual(bound);
            expect(Math.abs(sin[k] - Math.sin(a))).toBeLessThanOrEqual(bound);
          }
          // column 0 is inv_freq = 1: the angle is the position itself
          for (let t = 0; t < 17; t++) expect(cos[t * half]).toBe(Math.fround(Math.cos(pos[t])));
        }
      });
    }
  }
  it("rejects an odd headDim", () => {
    expect(() => ropeTables([0], 5, THETA)).toThrow(/even/);
  });
});

for (const [build, rt] of builds) {
  describe(`rope kernels (${build})`, () => {
    for (const T of [1, 5, 17]) {
      for (const nHeads of [1, 3]) {
        for (const headDim of [2, 6, 34, 128]) {
          it(`forward, JVP, VJP at T=${T} heads=${nHeads} headDim=${headDim}`, () => {
            rt.heap.scope(() => {
              const r = rng(T * 10_000 + nHeads * 1000 + headDim);
              const n = T * nHeads * headDim, half = headDim / 2;
              const pos = positionsFor(T, T === 17 ? 3000 : 0);
              const { cos, sin } = ropeTables(pos, headDim, THETA);
              const angles = ropeAnglesRef(pos, headDim, THETA, true); // the angles the tables hold
              const x = randn(r, n), v = randn(r, n), u = randn(r, n);
              const pc = put(rt, cos), ps = put(rt, sin), px = put(rt, x), pv = put(rt, v), pu = put(rt, u);
              const py = allocNaN(rt, n), pjv = allocNaN(rt, n), pju = allocNaN(rt, n);
              expect(cos.length).toBe(T * half);

              ropeForward(rt, px, py, pc, ps, T, nHeads, headDim);
              const y = get(rt, py, n);
              // cos, sin rounded to f32 (0.5 ulp), product and sum roundings: about 2 ulp of |x1| + |x2|
              expect(maxScaledError(y, ropeRef(x, angles, T, nHeads, headDim), ropeScale(x, T, nHeads, headDim))).toBeLessThan(2.5e-7);
              // a rotation keeps each pair's length, hence the norm
              expect(Math.sqrt(dot64(y, y) / dot64(x, x))).toBeCloseTo(1, 6);

              // JVP is the forward map (linear): compare with a finite difference of the f64 reference
              ropeJvp(rt, pv, pjv, pc, ps, T, nHeads, headDim);
              const jv = get(rt, pjv, n);
              const fd = centralDifference((xx) => ropeRef(xx, angles, T, nHeads, headDim), x, v);
              expect(maxScaledError(jv, fd, ropeScale(v, T, nHeads, headDim))).toBeLessThan(1e-6);

              // VJP: rotation by -angle; adjoint identity <u, R v> = <R^T u, v>; R^T R x = x
              ropeVjp(rt, pu, pju, pc, ps, T, nHeads, headDim);
              const ju = get(rt, pju, n);
              expect(maxScaledError(ju, ropeRef(u, angles, T, nHeads, headDim, true), ropeScale(u, T, nHeads, headDim))).toBeLessThan(2.5e-7);
              expect(Math.abs(dot64(u, jv) - dot64(ju, v))).toBeLessThanOrEqual(1e-5 * (absDot64(u, jv) + absDot64(ju, v)) / 2);
              ropeVjp(rt, py, py, pc, ps, T, nHeads, headDim);
              expect(maxScaledError(get(rt, py, n), x, ropeScale(x, T, nHeads, headDim))).toBeLessThan(5e-7);
            });
          });
        }
      }
    }

    it("y may alias x", () => {
      rt.heap.scope(() => {
        const T = 5, nHeads = 2, headDim = 34, n = T * nHeads * headDim, r = rng(3);
        const { cos, sin } = ropeTables(positionsFor(T, 7), headDim, THETA);
        const pc = put(rt, cos), ps = put(rt, sin), px = put(rt, randn(r, n)), py = allocNaN(rt, n);
        ropeForward(rt, px, py, pc, ps, T, nHeads, headDim);
        const y = get(rt, py, n);
        ropeForward(rt, px, px, pc, ps, T, nHeads, headDim);
        expect(get(rt, px, n)).toEqual(y);
      });
    });
  });
}

// ------------------------------------------------------------------------------------------------
// transformers' rotary embedding in torch (Qwen3RotaryEmbedding + apply_rotary_pos_emb, default rope)

// Input {cases: [{positions, heads, headDim, theta, x}]}; output one {cos, sin, y} per case.
const TORCH_SCRIPT = String.raw`
import json, sys, torch
out = []
for d in json.load(open(sys.argv[1]))["cases"]:
    T, H, D, theta = len(d["positions"]), d["heads"], d["headDim"], d["theta"]
    # Qwen3RotaryEmbedding.__init__ (rope_type "default", attention_scaling 1.0)
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).to(dtype=torch.float) / D))
    # Qwen3RotaryEmbedding.forward
    position_ids = torch.tensor([d["positions"]], dtype=torch.int64)
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = (emb.cos() * 1.0).to(torch.float32)
    sin = (emb.sin() * 1.0).to(torch.float32)
    # apply_rotary_pos_emb on q laid out [B, H, T, D]
    def rotate_half(x):
        x1 = x[..., : x.shape[-1] // 2]
        x2 = x[..., x.shape[-1] // 2 :]
        return torch.cat((-x2, x1), dim=-1)
    q = torch.tensor(d["x"], dtype=torch.float32).view(1, T, H, D).transpose(1, 2)
    q_embed = (q * cos.unsqueeze(1)) + (rotate_half(q) * sin.unsqueeze(1))
    out.append({
        "cos": cos[0, :, : D // 2].reshape(-1).tolist(),
        "sin": sin[0, :, : D // 2].reshape(-1).tolist(),
        "y": q_embed.transpose(1, 2).reshape(-1).tolist(),
    })
json.dump(out, open(sys.argv[2], "w"))
`;

describe("rope against torch (transformers' rotary in float32)", () => {
  const cases = [
    { T: 17, heads: 3, headDim: 128, theta: THETA, offset: 0 },
    { T: 5, heads: 2, headDim: 34, theta: 10_000, offset: 0 },
    { T: 9, heads: 1, headDim: 6, theta: THETA, offset: 30_000 },
    { T: 17, heads: 2, headDim: 128, theta: THETA, offset: 4000 },
  ].map((c) => ({ ...c, positions: positionsFor(c.T, c.offset), x: randn(rng(c.T + c.headDim), c.T * c.heads * c.headDim) }));
  type TorchOut = { cos: number[]; sin: number[]; y: number[] };
  let torchResults: TorchOut[] | undefined; // one python run for all cases
  const torchResult = (i: number): TorchOut => (torchResults ??= runTorchJson<TorchOut[]>(TORCH_SCRIPT, { cases }))[i];

  cases.forEach((c, i) => {
    itWithTorch(`tables and rotation match torch: T=${c.T} heads=${c.heads} headDim=${c.headDim} theta=${c.theta} from position ${c.offset}`, () => {
      const n = c.x.length, x = c.x;
      const ref = torchResult(i);
      const { cos, sin } = ropeTables(c.positions, c.headDim, c.theta);
      // torch's vectorised cos/sin are within 1 ulp; ours are the correctly rounded f32 of the f32 angle
      const ulp = 2 ** -23;
      expect(maxScaledError(cos, ref.cos, ref.cos.map(() => 1))).toBeLessThanOrEqual(ulp);
      expect(maxScaledError(sin, ref.sin, ref.sin.map(() => 1))).toBeLessThanOrEqual(ulp);

      for (const [build, rt] of builds) {
        rt.heap.scope(() => {
          // with torch's own tables the rotation matches bit for bit (same roundings, no FMA)
          const pc = put(rt, ref.cos), ps = put(rt, ref.sin), px = put(rt, x), py = allocNaN(rt, n);
          ropeForward(rt, px, py, pc, ps, c.T, c.heads, c.headDim);
          expect(Array.from(get(rt, py, n)), `${build}: y from torch's tables`).toEqual(ref.y);
          // with ours, within the tables' 1 ulp
          const pc2 = put(rt, cos), ps2 = put(rt, sin);
          ropeForward(rt, px, py, pc2, ps2, c.T, c.heads, c.headDim);
          expect(maxScaledError(get(rt, py, n), ref.y, ropeScale(x, c.T, c.heads, c.headDim))).toBeLessThan(3e-7);
        });
      }
    });
  });
});
