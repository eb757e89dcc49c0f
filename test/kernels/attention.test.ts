// Causal grouped-query attention kernels (assembly/attention.ts) against independent references:
// a float64 TS implementation of the definitions, central finite differences of it, the adjoint
// identity <gout, J t> = <J^T gout, t>, and PyTorch (float64, repeat_kv + causal mask + softmax,
// torch.autograd.grad) run by the system python. Both kernel builds are tested.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createNodeRuntime } from "../../src/node/runtime.js";
import type { Runtime } from "../../src/runtime/runtime.js";
import { attentionForward, attentionJvp, attentionScratchFloats, attentionVjp } from "../../src/kernels/attention.js";
import { attentionJvpRef, attentionRef, attentionVjpRef, type AttnShape } from "../helpers/attention-reference.js";
import { randn, rng } from "../helpers/random.js";

const runtimes: [string, Runtime][] = [
  ["relaxed-simd (default)", await createNodeRuntime()],
  ["simd", await createNodeRuntime({ prefer: "simd" })],
];

interface Case extends AttnShape {
  name: string;
  /** standard deviation of q and k entries: larger gives peakier softmax rows */
  qkScale: number;
}

function mkCase(Tq: number, Tk: number, nHeads: number, nKv: number, headDim: number, qkScale = 1): Case {
  return { name: `Tq=${Tq} Tk=${Tk} heads=${nHeads}/${nKv} hd=${headDim}${qkScale !== 1 ? ` qk*${qkScale}` : ""}`, Tq, Tk, nHeads, nKv, headDim, scale: Math.fround(1 / Math.sqrt(headDim)), qkScale };
}

const cases: Case[] = [];
for (const T of [1, 3, 17]) {
  for (const [nHeads, nKv] of [[2, 2], [4, 2], [4, 1]]) {
    for (const hd of [2, 5, 8, 34]) cases.push(mkCase(T, T, nHeads, nKv, hd));
  }
}
// KV-cache case: the queries are the last Tq of Tk positions.
cases.push(mkCase(2, 9, 4, 2, 5), mkCase(2, 9, 4, 1, 34), mkCase(1, 6, 2, 2, 8), mkCase(5, 17, 4, 2, 16));
// Peaky softmax rows, and a Qwen3-0.6B-like head layout (hd 128, 16/8 heads).
cases.push(mkCase(9, 9, 4, 2, 34, 3), mkCase(24, 24, 16, 8, 128), mkCase(7, 24, 16, 8, 128));

interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  gout: Float32Array;
  tq: Float32Array;
  tk: Float32Array;
  tv: Float32Array;
}

function inputsFor(c: Case, seed: number): Inputs {
  const r = rng(seed);
  const nq = c.Tq * c.nHeads * c.headDim, nkv = c.Tk * c.nKv * c.headDim;
  return {
    q: randn(r, nq, c.qkScale), k: randn(r, nkv, c.qkScale), v: randn(r, nkv),
    gout: randn(r, nq), tq: randn(r, nq), tk: randn(r, nkv), tv: randn(r, nkv),
  };
}

interface KernelResults {
  out: Float32Array;
  probs: Float32Array;
  gq: Float32Array;
  gk: Float32Array;
  gv: Float32Array;
  tout: Float32Array;
}

/** Runs forward, VJP(gout) and JVP(tq, tk, tv) through the TS wrappers; outputs are pre-filled with NaN to catch unwritten entries. */
function runKernels(rt: Runtime, c: Case, x: Inputs): KernelResults {
  return rt.heap.scope(() => {
    const nq = c.Tq * c.nHeads * c.headDim, nkv = c.Tk * c.nKv * c.headDim, np = c.nHeads * c.Tq * c.Tk;
    const put = (a: Float32Array) => {
      const p = rt.heap.allocF32(a.length);
      rt.heap.f32(p, a.length).set(a);
      return p;
    };
    const nan = (n: number) => {
      const p = rt.heap.allocF32(n);
      rt.heap.f32(p, n).fill(NaN);
      return p;
    };
    const q = put(x.q), k = put(x.k), v = put(x.v), gout = put(x.gout), tq = put(x.tq), tk = put(x.tk), tv = put(x.tv);
    const out = nan(nq), probs = nan(np), gq = nan(nq), gk = nan(nkv), gv = nan(nkv), tout = nan(nq);
    const dims = [c.Tq, c.Tk, c.nHeads, c.nKv, c.headDim, c.scale] as const;
    attentionForward(rt, q, k, v, out, probs, ...dims);
    attentionVjp(rt, q, k, v, probs, gout, gq, gk, gv, ...dims);
    attentionJvp(rt, q, k, v, probs, tq, tk, tv, tout, ...dims);
    const get = (p: number, n: number) => Float32Array.from(rt.heap.f32(p, n));
    return { out: get(out, nq), probs: get(probs, np), gq: get(gq, nq), gk: get(gk, nkv), gv: get(gv, nkv), tout: get(tout, nq) };
  });
}

/** max |a - b| / max |b| (0 when both are 0) */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    num = Number.isNaN(d) ? Infinity : Math.max(num, d);
    den = Math.max(den, Math.abs(b[i]));
  }
  return num === 0 ? 0 : num / den;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
const norm = (a: ArrayLike<number>) => Math.sqrt(dot(a, a));

function axpy(x: ArrayLike<number>, t: ArrayLike<number>, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i] + eps * t[i];
  return y;
}

/** Central difference of the float64 reference forward along (tq, tk, tv). */
function finiteDifferenceJvp(c: Case, x: Inputs, eps = 1e-5): Float64Array {
  const plus = attentionRef(c, axpy(x.q, x.tq, eps), axpy(x.k, x.tk, eps), axpy(x.v, x.tv, eps)).out;
  const minus = attentionRef(c, axpy(x.q, x.tq, -eps), axpy(x.k, x.tk, -eps), axpy(x.v, x.tv, -eps)).out;
  return plus.map((p, i) => (p - minus[i]) / (2 * eps));
}

const TOL = 1e-5;

describe("attention reference (float64) is self-consistent", () => {
  for (const c of cases.filter((c) => c.Tq >= 3 && c.headDim !== 128)) {
    it(`JVP = finite differences, adjoint identity: ${c.name}`, () => {
      const x = inputsFor(c, 11);
      const jvp = attentionJvpRef(c, x.q, x.k, x.v, x.tq, x.tk, x.tv);
      expect(relErr(jvp, finiteDifferenceJvp(c, x))).toBeLessThan(1e-7);
      const { gq, gk, gv } = attentionVjpRef(c, x.q, x.k, x.v, x.gout);
      const lhs = dot(x.gout, jvp), rhs = dot(gq, x.tq) + dot(gk, x.tk) + dot(gv, x.tv);
      expect(Math.abs(lhs - rhs)).toBeLessThan(1e-12 * norm(x.gout) * norm(jvp) + 1e-300);
    });
  }
});

for (const [buildName, rt] of runtimes) {
  describe(`attention kernels, ${buildName} build`, () => {
    it("is the build asked for", () => {
      expect(rt.k.isRelaxedBuild()).toBe(buildName === "simd" ? 0 : 1);
    });

    for (const c of cases) {
      it(c.name, () => {
        const x = inputsFor(c, 1000 + c.Tq * 31 + c.Tk * 7 + c.nHeads * 3 + c.headDim);
        const got = runKernels(rt, c, x);
        const ref = attentionRef(c, x.q, x.k, x.v);

        // forward: out and saved probabilities, masked entries exactly 0
        expect(relErr(got.out, ref.out)).toBeLessThan(TOL);
        expect(relErr(got.probs, ref.probs)).toBeLessThan(TOL);
        for (let h = 0; h < c.nHeads; h++) {
          for (let i = 0; i < c.Tq; i++) {
            for (let j = c.Tk - c.Tq + i + 1; j < c.Tk; j++) expect(got.probs[(h * c.Tq + i) * c.Tk + j]).toBe(0);
          }
        }

        // JVP: against the float64 JVP and against central differences of the float64 forward
        expect(relErr(got.tout, attentionJvpRef(c, x.q, x.k, x.v, x.tq, x.tk, x.tv))).toBeLessThan(TOL);
        expect(relErr(got.tout, finiteDifferenceJvp(c, x))).toBeLessThan(TOL);

        // VJP: against the float64 VJP
        const rv = attentionVjpRef(c, x.q, x.k, x.v, x.gout);
        expect(relErr(got.gq, rv.gq)).toBeLessThan(TOL);
        expect(relErr(got.gk, rv.gk)).toBeLessThan(TOL);
        expect(relErr(got.gv, rv.gv)).toBeLessThan(TOL);

        // adjoint identity between the two kernels: <gout, J t> = <J^T gout, (tq, tk, tv)>
        const lhs = dot(x.gout, got.tout);
        const rhs = dot(got.gq, x.tq) + dot(got.gk, x.tk) + dot(got.gv, x.tv);
        const size = norm(x.gout) * norm(got.tout);
        expect(Math.abs(lhs - rhs)).toBeLessThan(TOL * size);
      });
    }

    it("is deterministic, and KV-cache rows equal the matching rows of the full computation bit for bit", () => {
      const full = mkCase(13, 13, 4, 2, 34);
      const x = inputsFor(full, 5);
      const a = runKernels(rt, full, x), b = runKernels(rt, full, x);
      for (const key of ["out", "probs", "gq", "gk", "gv", "tout"] as const) expect(Array.from(a[key])).toEqual(Array.from(b[key]));
      // last 4 queries against all 13 keys
      const tail = mkCase(4, 13, 4, 2, 34);
      const w = full.nHeads * full.headDim, from = (full.Tq - tail.Tq) * w;
      const xt: Inputs = { ...x, q: x.q.slice(from), gout: x.gout.slice(from), tq: x.tq.slice(from) };
      const t = runKernels(rt, tail, xt);
      expect(Array.from(t.out)).toEqual(Array.from(a.out.slice(from)));
      expect(Array.from(t.tout)).toEqual(Array.from(a.tout.slice(from)));
      expect(Array.from(t.gq)).toEqual(Array.from(a.gq.slice(from)));
      for (let h = 0; h < full.nHeads; h++) {
        const rowsFull = a.probs.slice((h * full.Tq + full.Tq - tail.Tq) * full.Tk, (h + 1) * full.Tq * full.Tk);
        expect(Array.from(t.probs.slice(h * tail.Tq * tail.Tk, (h + 1) * tail.Tq * tail.Tk))).toEqual(Array.from(rowsFull));
      }
    });

    it("declares scratch of one [Tq, Tk] buffer", () => {
      expect(attentionScratchFloats(rt, 17, 17, 4, 2, 8)).toBe(17 * 17);
      expect(attentionScratchFloats(rt, 2, 9, 4, 2, 8)).toBe(18);
      expect(attentionScratchFloats(rt, 1, 9, 4, 2, 8)).toBe(9);
    });
  });
}

// ---------------------------------------------------------------- PyTorch cross-check

// The system python carries Debian's torch; JACSTEER_PYTHON overrides it (e.g. to check the skip path).
const PYTHON = process.env.JACSTEER_PYTHON ?? "/usr/bin/python3";
const TORCH_SCRIPT = String.raw`
import json, sys, torch
cases = json.load(open(sys.argv[1]))
res = []
for c in cases:
    Tq, Tk, H, G, hd, scale = c["Tq"], c["Tk"], c["nHeads"], c["nKv"], c["headDim"], c["scale"]
    t = lambda name, T, n: torch.tensor(c[name], dtype=torch.float64).reshape(T, n, hd).transpose(0, 1).contiguous().requires_grad_(True)
    q, k, v = t("q", Tq, H), t("k", Tk, G), t("v", Tk, G)
    gout = torch.tensor(c["gout"], dtype=torch.float64).reshape(Tq, H * hd)
    def repeat_kv(x):  # transformers' repeat_kv on [heads, T, hd]
        n, T, d = x.shape
        return x[:, None].expand(n, H // n, T, d).reshape(H, T, d)
    scores = torch.matmul(q, repeat_kv(k).transpose(1, 2)) * scale
    i = torch.arange(Tq)[:, None] + (Tk - Tq)
    j = torch.arange(Tk)[None, :]
    scores = scores.masked_fill(j > i, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    out = torch.matmul(p, repeat_kv(v)).transpose(0, 1).reshape(Tq, H * hd)
    gq, gk, gv = torch.autograd.grad(out, (q, k, v), gout)
    flat = lambda x: x.transpose(0, 1).reshape(-1).tolist()
    res.append({"out": out.reshape(-1).tolist(), "probs": p.reshape(-1).tolist(), "gq": flat(gq), "gk": flat(gk), "gv": flat(gv)})
json.dump(res, open(sys.argv[2], "w"))
`;

const requireTorch = process.env.JACSTEER_REQUIRE_TORCH === "1";
const torchProbe = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
const haveTorch = torchProbe.status === 0;
if (!haveTorch) {
  const why = torchProbe.error ? String(torchProbe.error) : (torchProbe.stderr || "").trim().split("\n").pop();
  console.warn(
    `\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n` +
      `!!! WARNING: PyTorch not available via ${PYTHON} (${why}).\n` +
      `!!! The attention-vs-PyTorch test is ${requireTorch ? "FAILING (JACSTEER_REQUIRE_TORCH=1)" : "SKIPPED"}.\n` +
      `!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n`,
  );
}

describe("attention kernels against PyTorch (float64, torch.autograd.grad)", () => {
  it.skipIf(!haveTorch && !requireTorch)("forward, probabilities and VJP match for every case and both builds", () => {
    if (!haveTorch) throw new Error(`JACSTEER_REQUIRE_TORCH=1 but ${PYTHON} cannot import torch`);
    const torchCases = cases.map((c, n) => ({ c, x: inputsFor(c, 7000 + n) }));
    const dir = mkdtempSync(join(tmpdir(), "jacsteer-attn-"));
    try {
      const inFile = join(dir, "in.json"), outFile = join(dir, "out.json");
      writeFileSync(
        inFile,
        JSON.stringify(torchCases.map(({ c, x }) => ({ ...c, q: Array.from(x.q), k: Array.from(x.k), v: Array.from(x.v), gout: Array.from(x.gout) }))),
      );
      const r = spawnSync(PYTHON, ["-c", TORCH_SCRIPT, inFile, outFile], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`torch reference failed: ${r.stderr}`);
      const torchRes: { out: number[]; probs: number[]; gq: number[]; gk: number[]; gv: number[] }[] = JSON.parse(readFileSync(outFile, "utf8"));
      expect(torchRes.length).toBe(torchCases.length);
      for (const [, rt] of runtimes) {
        torchCases.forEach(({ c, x }, n) => {
          const got = runKernels(rt, c, x), want = torchRes[n];
          for (const key of ["out", "probs", "gq", "gk", "gv"] as const) {
            const e = relErr(got[key], want[key]);
            if (!(e < TOL)) throw new Error(`${rt.build} ${c.name}: ${key} differs from torch by ${e.toExponential(2)} (relative)`);
          }
        });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
