// The graph-free steering engine against the autodiff SteeringJacobian (the reference): J V, J^T U
// and J^T J V for blocks of vectors, on small random checkpoints chosen to hit the awkward cases
// (GQA ratios 1/2/4, head_dim != hidden/heads, odd hidden size, several prompts of different
// lengths, S = T, a point sv0 != 0, weighted position lists); the adjoint identity; and results
// bitwise identical for 1, 2 and 3 threads (worker threads need `npm run build` for dist/workers).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SteeringJacobian, type SteeringSite } from "../../src/jacobian/steering-jacobian.js";
import { SteeringEngine } from "../../src/engine/steering-engine.js";
import { createParallelGemm, defaultWorkerFile } from "../../src/node/thread-pool.js";
import { dot } from "../../src/linalg/dense.js";
import type { RowReadableTensorSource, TensorSource } from "../../src/model/weights.js";
import { openSafetensorsFile } from "../../src/node/safetensors-file.js";
import { SMALL_SHAPE, writeTempCheckpoint, type TempCheckpoint } from "../helpers/checkpoints.js";
import { loadTestModel, maxRelErr } from "../helpers/model.js";
import { randn, rng } from "../helpers/random.js";

const cleanup: TempCheckpoint[] = [];
const engines: SteeringEngine[] = [];
afterAll(async () => {
  for (const e of engines) await e.close();
  cleanup.forEach((c) => c.remove());
});

const TOL = 1e-5;

interface Case {
  name: string;
  shape: typeof SMALL_SHAPE;
  dtype: "F32" | "BF16";
  prompts: number[][];
  site: (d: number) => SteeringSite;
}

const cases: Case[] = [
  {
    name: "GQA 2, head_dim 12 != 32/4, two prompts, S=0 T=1 K=3",
    shape: SMALL_SHAPE,
    dtype: "F32",
    prompts: [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2]],
    site: () => ({ sourceLayer: 0, targetLayer: 1, positions: 3 }),
  },
  {
    name: "GQA 1, S = T",
    shape: { ...SMALL_SHAPE, num_attention_heads: 2, num_key_value_heads: 2, head_dim: 16 },
    dtype: "F32",
    prompts: [[5, 4, 3, 2, 1], [9, 9, 8]],
    site: () => ({ sourceLayer: 1, targetLayer: 1, positions: 2 }),
  },
  {
    name: "GQA 4, odd hidden 33, head_dim 10, BF16, 4 layers, S=0 T=3, at sv0 != 0",
    shape: { ...SMALL_SHAPE, hidden_size: 33, intermediate_size: 37, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 10, num_hidden_layers: 4 },
    dtype: "BF16",
    prompts: [[1, 2, 3, 4, 5, 6, 7], [11, 12, 13, 14], [20, 30, 40, 41, 42, 43]],
    site: (d) => ({ sourceLayer: 0, targetLayer: 3, positions: 4, at: Float32Array.from(randn(rng(77), d), (x) => 0.5 * x) }),
  },
  {
    name: "S=1 T=2 of 3 layers, weighted position list",
    shape: { ...SMALL_SHAPE, num_hidden_layers: 3 },
    dtype: "F32",
    prompts: [[1, 3, 5, 7, 9, 11], [2, 4, 6, 8, 10, 12, 14]],
    site: () => ({ sourceLayer: 1, targetLayer: 2, positions: { kind: "list", indices: [0, -1, 2], weights: [0.5, 2, 1] } }),
  },
  {
    name: "all positions, three prompts of equal length",
    shape: SMALL_SHAPE,
    dtype: "F32",
    prompts: [[1, 2, 3, 4], [4, 3, 2, 1], [7, 7, 7, 7]],
    site: () => ({ sourceLayer: 0, targetLayer: 1, positions: { kind: "all" } }),
  },
  {
    name: "last 2 positions with weights, S = T = 0",
    shape: SMALL_SHAPE,
    dtype: "F32",
    prompts: [[1, 2, 3, 4], [9, 8, 7]],
    site: () => ({ sourceLayer: 0, targetLayer: 0, positions: { kind: "last", count: 2, weights: [3, 0.25] } }),
  },
];

function block(seed: number, n: number, len: number): Float32Array[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Float32Array.from(randn(r, len)));
}

describe("SteeringEngine against the autodiff SteeringJacobian", () => {
  for (const c of cases) {
    describe(c.name, async () => {
      const ck = writeTempCheckpoint(c.shape, { seed: 5, dtype: c.dtype });
      cleanup.push(ck);
      const { rt, model, ckpt } = await loadTestModel(ck.dir, { head: false });
      const site = c.site(ckpt.config.hiddenSize);
      const J = new SteeringJacobian(model, c.prompts, site);
      const engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, c.prompts, site);
      engines.push(engine);
      const d = engine.inputDim;
      const n = 3;

      it("has the same shape and targets at sv0", () => {
        expect(engine.outputDim).toBe(J.outputDim);
        const a = engine.targets(), b = J.targets();
        a.forEach((t, i) => expect(maxRelErr(t, b[i]!)).toBeLessThan(TOL));
      });

      it("J V equals the reference's J v for each vector of a block", async () => {
        const V = block(1, n, d);
        const got = await engine.applyJ(V);
        V.forEach((v, j) => expect(maxRelErr(got[j]!, J.apply(v))).toBeLessThan(TOL));
      });

      it("J^T U equals the reference's J^T u", async () => {
        const U = block(2, n, engine.outputDim);
        const got = await engine.applyJt(U);
        U.forEach((u, j) => expect(maxRelErr(got[j]!, J.applyTransposed(u))).toBeLessThan(TOL));
      });

      it("J^T J V equals the reference's normal product (forward mode and the seed's double VJP)", async () => {
        const V = block(3, n, d);
        const got = await engine.normalProducts(V);
        V.forEach((v, j) => {
          expect(maxRelErr(got[j]!, J.normalProduct(v, "jvp"))).toBeLessThan(TOL);
          expect(maxRelErr(got[j]!, J.normalProduct(v, "double-vjp"))).toBeLessThan(TOL);
        });
        expect(engine.products).toBe(n);
      });

      it("adjoint identity <u, J v> = <J^T u, v>, and a block of 1 equals the same vector in a block of 3", async () => {
        const [v] = block(4, 1, d), [u] = block(5, 1, engine.outputDim);
        const [jv] = await engine.applyJ([v!]);
        const [jtu] = await engine.applyJt([u!]);
        const lhs = dot(Float64Array.from(u!), Float64Array.from(jv!)), rhs = dot(jtu!, Float64Array.from(v!));
        expect(Math.abs(lhs - rhs) / Math.abs(lhs)).toBeLessThan(1e-5);
        const V = [...block(6, 1, d), v!, ...block(7, 1, d)];
        const [, jv3] = await engine.applyJ(V);
        expect(jv3).toEqual(jv);
      });
    });
  }
});

describe("threads", () => {
  const built = existsSync(defaultWorkerFile());
  it("the worker entry is built (npm run build compiles workers/ to dist/workers)", () => {
    expect(built, `${defaultWorkerFile()} missing: run \`npm run build\``).toBe(true);
  });

  describe.runIf(built)("results are bitwise identical for 1, 2 and 3 threads", async () => {
    const c = cases[2]!;
    const ck = writeTempCheckpoint(c.shape, { seed: 8, dtype: c.dtype });
    cleanup.push(ck);
    const { rt, ckpt } = await loadTestModel(ck.dir, { head: false });
    const site = c.site(ckpt.config.hiddenSize);
    const byThreads = new Map<number, SteeringEngine>();
    for (const t of [1, 2, 3]) {
      // minParallelFlops 0: split even these tiny products, so every slice boundary is exercised.
      const gemm = await createParallelGemm(rt, t, { minParallelFlops: 0 });
      const e = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, c.prompts, site, { gemm });
      engines.push(e);
      byThreads.set(t, e);
    }
    const V = block(9, 4, ckpt.config.hiddenSize);

    it("threads as asked, targets, J V and J^T J V bitwise equal", async () => {
      const ref = byThreads.get(1)!;
      expect(ref.threads).toBe(1);
      const refJv = await ref.applyJ(V);
      const refN = await ref.normalProducts(V);
      for (const t of [2, 3]) {
        const e = byThreads.get(t)!;
        expect(e.threads).toBe(t);
        expect(e.targets()).toEqual(ref.targets());
        expect(await e.applyJ(V)).toEqual(refJv);
        expect(await e.normalProducts(V)).toEqual(refN);
      }
    });

    it("concurrent calls are serialised and give the same results", async () => {
      const e = byThreads.get(2)!;
      const [a, b] = await Promise.all([e.normalProducts(V), e.normalProducts(V.slice(0, 2))]);
      const ref = await byThreads.get(1)!.normalProducts(V);
      expect(a).toEqual(ref);
      expect(b).toEqual(ref.slice(0, 2));
    });
  });
});

describe("loading", async () => {
  const ck = writeTempCheckpoint(SMALL_SHAPE, { seed: 12, dtype: "BF16" });
  cleanup.push(ck);
  const { rt, ckpt } = await loadTestModel(ck.dir, { head: false });
  const prompts = [[1, 2, 3, 4, 5], [6, 7, 8]];
  const site = { sourceLayer: 0, targetLayer: 1, positions: 2 };

  it("reads only the prompts' embedding rows when the source can, with the same results", async () => {
    const reader = openSafetensorsFile(join(ck.dir, "model.safetensors"));
    const wholeReads: string[] = [];
    const rowReads: number[] = [];
    const rowSource: RowReadableTensorSource = {
      ...ckpt.tensors,
      readF32: (name, dst) => {
        wholeReads.push(name);
        ckpt.tensors.readF32(name, dst);
      },
      readRowsF32: (name, row0, rows, dst) => {
        rowReads.push(row0);
        reader.readRowsF32(name, row0, rows, dst);
      },
    };
    const a = await SteeringEngine.create(rt, ckpt.config, rowSource, prompts, site);
    const b = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, site);
    engines.push(a, b);
    reader.close();
    expect(wholeReads).not.toContain("model.embed_tokens.weight");
    expect(rowReads.sort((x, y) => x - y)).toEqual(prompts.flat().sort((x, y) => x - y));
    const V = block(10, 2, ckpt.config.hiddenSize);
    expect(await a.normalProducts(V)).toEqual(await b.normalProducts(V));
  });

  it("rejects bad sites, prompts and vectors with messages naming the flag", async () => {
    const bad = (p: number[][], s: SteeringSite) => SteeringEngine.create(rt, ckpt.config, ckpt.tensors, p, s);
    await expect(bad(prompts, { ...site, sourceLayer: 1, targetLayer: 0 })).rejects.toThrow(/--source-layer 1 is after --target-layer 0/);
    await expect(bad(prompts, { ...site, targetLayer: 2 })).rejects.toThrow(/--target-layer 2 is out of range/);
    await expect(bad(prompts, { ...site, positions: 4 })).rejects.toThrow(/--positions 4 needs at least 4 tokens, but prompt 2 has 3/);
    await expect(bad([[1, 2, 99]], site)).rejects.toThrow(/prompt 1: token id 99 is outside the vocabulary/);
    await expect(bad(prompts, { ...site, at: new Float32Array(3) })).rejects.toThrow(/--at vector has length 3/);
    await expect(bad([], site)).rejects.toThrow(/no prompt given/);
    const used = rt.heap.usedBytes;
    const e = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, site);
    engines.push(e);
    expect(rt.heap.usedBytes).toBeGreaterThan(used);
    await expect(e.applyJ([new Float32Array(5)])).rejects.toThrow(/vector 0 has length 5, expected 32/);
  });

  it("a failed load leaves the heap as it was (NaN in a weight read as f32, or streamed as stored BF16)", async () => {
    const { readRaw: _raw, dtype: _dtype, ...f32Only } = ckpt.tensors;
    const broken: TensorSource = {
      ...f32Only,
      readF32: (name, dst) => {
        ckpt.tensors.readF32(name, dst);
        if (name === "model.layers.1.mlp.up_proj.weight") dst[7] = NaN;
      },
    };
    const brokenRaw = {
      ...ckpt.tensors,
      readRaw: async (name: string, dst: Uint8Array) => {
        await ckpt.tensors.readRaw(name, dst);
        if (name === "model.layers.1.mlp.up_proj.weight") new DataView(dst.buffer, dst.byteOffset + 2 * 7, 2).setUint16(0, 0x7fc0, true);
      },
    };
    const used = rt.heap.usedBytes;
    for (const weights of ["resident", "stream"] as const) {
      await expect(SteeringEngine.create(rt, ckpt.config, broken, prompts, site, { weights })).rejects.toThrow(/model.layers.1.mlp.up_proj.weight.*non-finite value \(NaN\) at flat index 7/);
      await expect(SteeringEngine.create(rt, ckpt.config, brokenRaw, prompts, site, { weights })).rejects.toThrow(/model.layers.1.mlp.up_proj.weight.*non-finite value \(NaN\) at flat index 7/);
      expect(rt.heap.usedBytes).toBe(used);
    }
  });
});

describe("streamed weights (read per pass in the stored dtype) against resident ones", () => {
  const built = existsSync(defaultWorkerFile());
  for (const dtype of ["BF16", "F16", "F32"] as const) {
    describe.runIf(built)(`${dtype}: bitwise identical for 1, 2 and 3 threads, products in any order`, async () => {
      const c = cases[2]!; // 4 layers, GQA 4, odd hidden 33, three prompts, sv0 != 0
      const ck = writeTempCheckpoint(c.shape, { seed: 21, dtype, shards: 2 });
      cleanup.push(ck);
      const { rt, ckpt } = await loadTestModel(ck.dir, { head: false });
      const site = { ...c.site(ckpt.config.hiddenSize), sourceLayer: 0, targetLayer: 3 };
      const V = block(31, 3, ckpt.config.hiddenSize);
      const make = async (threads: number, weights: "resident" | "stream") => {
        const gemm = await createParallelGemm(rt, threads, { minParallelFlops: 0 });
        const e = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, c.prompts, site, { gemm, weights });
        engines.push(e);
        return e;
      };
      const resident = await make(1, "resident");
      expect(resident.weightPlan.mode).toBe("resident");
      const refTargets = resident.targets();
      const refN = await resident.normalProducts(V);
      const refJ = await resident.applyJ(V);
      const Ut = refJ.slice(0, 2).map((j, i) => Float32Array.from(j, (x, k) => x * (1 + 0.1 * i) + (k % 3)));
      const refJt = await resident.applyJt(Ut);

      for (const threads of [1, 2, 3]) {
        it(`${threads} thread(s): targets, J^T J V (twice: the slots carry over between products), J V, J^T U`, async () => {
          const s = await make(threads, "stream");
          expect(s.weightPlan.mode).toBe("stream");
          expect(s.stream).not.toBeNull();
          expect(s.targets()).toEqual(refTargets);
          expect(await s.normalProducts(V)).toEqual(refN);
          // Layers 1..3 each pass; each pass starts on the two layers the last one ended with, so a
          // product reads 2 * 3 - 4 layers (the third, then the first).
          const reads0 = s.stream!.reads;
          expect(await s.normalProducts(V)).toEqual(refN);
          expect(s.stream!.reads - reads0).toBe(2 * 3 - 4);
          expect(await s.applyJ(V)).toEqual(refJ);
          expect(await s.applyJt(Ut)).toEqual(refJt);
          if (threads > 1) {
            const r = await make(threads, "resident");
            expect(await r.normalProducts(V)).toEqual(refN);
          }
        });
      }
    });
  }

  it("auto picks stream when the packed layers exceed the budget, and says so", async () => {
    const ck = writeTempCheckpoint(SMALL_SHAPE, { seed: 22, dtype: "BF16" });
    cleanup.push(ck);
    const { rt, ckpt } = await loadTestModel(ck.dir, { head: false });
    const site = { sourceLayer: 0, targetLayer: 1, positions: 2 };
    const lines: string[] = [];
    const small = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, [[1, 2, 3]], site, { residentBudgetBytes: 1000, log: (l) => lines.push(l) });
    const big = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, [[1, 2, 3]], site, { log: (l) => lines.push(l) });
    engines.push(small, big);
    expect(small.weightPlan.mode).toBe("stream");
    expect(big.weightPlan.mode).toBe("resident");
    expect(small.weightPlan.residentBytes).toBe(big.weightPlan.residentBytes);
    expect(lines.some((l) => /weights streamed from the checkpoint/.test(l))).toBe(true);
    expect(lines.some((l) => /weights resident/.test(l))).toBe(true);
  });

  it("a shard deleted or truncated during a streamed run: the product fails naming the file", async () => {
    const { truncateSync, unlinkSync } = await import("node:fs");
    for (const damage of ["delete", "truncate"] as const) {
      const ck = writeTempCheckpoint({ ...SMALL_SHAPE, num_hidden_layers: 4 }, { seed: 23, dtype: "BF16", shards: 3 });
      cleanup.push(ck);
      const { rt, ckpt } = await loadTestModel(ck.dir, { head: false });
      const e = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, [[1, 2, 3, 4]], { sourceLayer: 0, targetLayer: 3, positions: 2 }, { weights: "stream" });
      engines.push(e);
      const V = block(40, 2, ckpt.config.hiddenSize);
      await e.normalProducts(V);
      // The shard holding layer 1's down_proj: re-read by every product's VJP (layers 1..3, two slots).
      const index = JSON.parse((await import("node:fs")).readFileSync(join(ck.dir, "model.safetensors.index.json"), "utf8")) as { weight_map: Record<string, string> };
      const shard = join(ck.dir, index.weight_map["model.layers.1.mlp.down_proj.weight"]!);
      if (damage === "delete") unlinkSync(shard);
      else truncateSync(shard, 100);
      const re = damage === "delete" ? /disappeared during the run/ : /changed size during the run/;
      await expect(e.normalProducts(V)).rejects.toThrow(new RegExp(`${shard.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.*`));
      await expect(e.normalProducts(V)).rejects.toThrow(re);
    }
  });
});
