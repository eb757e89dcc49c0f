// The one-call API (src/api/, jacsteer/node): the same answers as the building blocks and the CLI (bit
// for bit), checked against the autodiff reference's J^T J, on a path or an opened checkpoint, any
// thread count; cancellation rejects with AbortError and leaves nothing open or allocated.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as lib from "../../src/index.js";
import * as nodeApi from "../../src/node/api.js";
import { openCheckpoint, type Checkpoint } from "../../src/node/checkpoint.js";
import { createNodeRuntime } from "../../src/node/runtime.js";
import { createParallelGemm } from "../../src/node/thread-pool.js";
import { SteeringEngine } from "../../src/engine/steering-engine.js";
import { SerialGemm, type ParallelGemm } from "../../src/engine/parallel-gemm.js";
import { blockLanczosAsync } from "../../src/solvers/block-lanczos.js";
import { AutodiffContext } from "../../src/autodiff/tensor.js";
import { loadQwen3Weights } from "../../src/model/weights.js";
import { Qwen3Model } from "../../src/model/qwen3.js";
import { SteeringJacobian } from "../../src/jacobian/steering-jacobian.js";
import { encodeVectorFile } from "../../src/io/vector-file.js";
import type { Runtime } from "../../src/runtime/runtime.js";
import { jacsteer } from "../helpers/cli.js";

const TINY = join(process.cwd(), "models", "tiny");
const DATASET = join(process.cwd(), "examples", "ab-dataset.json");
const PROMPT = [5, 17, 33, 2, 40, 9, 11];
const SITE = { sourceLayer: 1, targetLayer: 2 };

let rt: Runtime;
let ckpt: Checkpoint;
let dir: string;
beforeAll(async () => {
  rt = await createNodeRuntime();
  ckpt = openCheckpoint(TINY);
  dir = mkdtempSync(join(tmpdir(), "jacsteer-api-"));
});
afterAll(() => {
  ckpt.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A gemm that records whether the call closed it. */
function spyGemm(inner: ParallelGemm): ParallelGemm & { closed: boolean } {
  const g = {
    closed: false,
    threads: inner.threads,
    run: inner.run.bind(inner),
    runTasks: inner.runTasks.bind(inner),
    close: async () => {
      g.closed = true;
      await inner.close();
    },
  };
  return g;
}

describe("powerIter", () => {
  it("from a directory path: the building blocks' vectors bit for bit, and J^T J v = sigma^2 v by the autodiff reference", async () => {
    const r = await nodeApi.powerIter({ model: TINY, prompts: [PROMPT], ...SITE, numVectors: 3, threads: 1, tol: 1e-7 });
    expect(r.converged).toBe(true);
    expect(r.vectors).toHaveLength(3);
    expect(r.tokens).toEqual([PROMPT]);
    expect(r.positions).toBe(4);

    // The six calls a user assembled before (issue 14): the same numbers bit for bit.
    const engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, [PROMPT], { ...SITE, positions: 4 }, {});
    try {
      const direct = await blockLanczosAsync({ dim: ckpt.config.hiddenSize, applyBlock: (V) => engine.normalProducts(V) }, { numVectors: 3, tol: 1e-7, seed: 0 });
      expect(r.singularValues).toEqual(direct.singularValues);
      direct.vectors.forEach((v, i) => expect(Array.from(r.vectors[i])).toEqual(Array.from(Float32Array.from(v))));
    } finally {
      await engine.close();
    }

    // Independent check: the seed's double VJP on the autodiff model (float32, another code path).
    const ctx = new AutodiffContext(rt);
    const mark = rt.heap.mark();
    try {
      const w = ctx.noGrad(() => loadQwen3Weights(ctx, ckpt.config, ckpt.tensors, { layers: SITE.targetLayer + 1 }));
      const J = new SteeringJacobian(new Qwen3Model(ctx, ckpt.config, w), [PROMPT], { ...SITE, positions: 4 });
      r.vectors.forEach((v, i) => {
        const Av = J.normalProduct(v, "double-vjp");
        const s2 = r.singularValues![i] ** 2;
        let res = 0;
        for (let k = 0; k < v.length; k++) res += (Av[k] - s2 * v[k]) ** 2;
        // float32 products: ~1e-6 relative; a vector or sigma off by 1e-3 fails this
        expect(Math.sqrt(res) / r.singularValues![0] ** 2, `vector ${i}`).toBeLessThan(2e-5);
      });
    } finally {
      rt.heap.release(mark);
    }
  });

  it("the neutral entry on an opened checkpoint, 2 threads: the same vectors bit for bit as 1 thread; the CLI writes the same file", async () => {
    const one = await nodeApi.powerIter({ model: TINY, prompts: [PROMPT], ...SITE, numVectors: 2, threads: 1 });
    const two = await lib.powerIter({ model: ckpt, runtime: rt, prompts: [PROMPT], ...SITE, numVectors: 2, threads: 2, createGemm: (r) => createParallelGemm(r, 2) });
    expect(two.threads).toBe(2);
    expect(two.singularValues).toEqual(one.singularValues);
    two.vectors.forEach((v, i) => expect(Array.from(v)).toEqual(Array.from(one.vectors[i])));

    const out = join(dir, "cli.safetensors");
    const cli = jacsteer(["power-iter", "--tokens", PROMPT.join(","), "--source-layer", "1", "--target-layer", "2", "--num-vectors", "2", "--threads", "1", "--out", out]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(Buffer.from(encodeVectorFile(one)).equals(readFileSync(out))).toBe(true);
  });

  it("text prompts need the checkpoint's tokenizer; bad input is one error naming the option", async () => {
    const r = await nodeApi.powerIter({ model: TINY, prompts: ["Hello there, world"], ...SITE, numVectors: 1, maxIters: 2, tol: 0 });
    expect(r.tokens[0].length).toBeGreaterThan(4);
    await expect(nodeApi.powerIter({ model: TINY, prompts: [PROMPT], sourceLayer: 3, targetLayer: 1 })).rejects.toThrow(/--source-layer 3 .*--target-layer 1/);
    await expect(nodeApi.powerIter({ model: join(dir, "nope"), prompts: [PROMPT] })).rejects.toThrow(/nope: directory does not exist/);
    await expect(lib.powerIter({ model: ckpt, runtime: rt, prompts: ["text"] })).rejects.toThrow(/needs a tokenizer/);
  });

  it("abort from onProgress: AbortError, the gemm closed, the heap as before, no file written", async () => {
    const before = readdirSync(dir).length;
    const mark = rt.heap.mark();
    const ac = new AbortController();
    let gemm: (ParallelGemm & { closed: boolean }) | undefined;
    const seen: number[] = [];
    const run = lib.powerIter({
      model: ckpt,
      runtime: rt,
      prompts: [PROMPT],
      ...SITE,
      numVectors: 2,
      tol: 0,
      maxIters: 50,
      signal: ac.signal,
      createGemm: async (r) => (gemm = spyGemm(new SerialGemm(r))),
      onProgress: (p) => {
        seen.push(p.iteration);
        expect(p.line).toMatch(/^iter \d+: sigma /);
        expect(p.etaText).toMatch(/ETA/);
        if (p.iteration === 2) ac.abort();
      },
    });
    await expect(run).rejects.toBeInstanceOf(lib.AbortError);
    await expect(run).rejects.toMatchObject({ name: "AbortError" });
    expect(seen).toEqual([1, 2]);
    expect(gemm?.closed).toBe(true);
    expect(rt.heap.mark()).toBe(mark);
    expect(readdirSync(dir).length).toBe(before);
  });

  it("abort from a timer while the blocks run, and an already aborted signal", async () => {
    const ac = new AbortController();
    const t0 = performance.now();
    let blocks = 0;
    // the timer is set once the blocks run (loading takes a while on a busy machine)
    const onProgress = () => ++blocks === 1 && setTimeout(() => ac.abort("enough"), 50);
    const run = nodeApi.powerIter({ model: TINY, prompts: [PROMPT], ...SITE, numVectors: 2, tol: 0, maxIters: 100000, threads: 1, signal: ac.signal, onProgress });
    await expect(run).rejects.toThrow(/aborted: enough/);
    expect(blocks).toBeGreaterThan(0);
    expect(blocks).toBeLessThan(100000);
    expect(performance.now() - t0).toBeLessThan(300_000);
    const pre = AbortSignal.abort();
    for (const call of [
      () => nodeApi.powerIter({ model: TINY, prompts: [PROMPT], signal: pre }),
      () => nodeApi.melbo({ model: TINY, prompts: [PROMPT], signal: pre }),
      () => nodeApi.caa({ model: TINY, dataset: { text: readFileSync(DATASET, "utf8") }, signal: pre }),
      () => nodeApi.evalAb({ model: TINY, dataset: { text: readFileSync(DATASET, "utf8") }, signal: pre }),
      () => nodeApi.generate({ model: TINY, prompts: [PROMPT], signal: pre }),
    ]) {
      await expect(call()).rejects.toBeInstanceOf(lib.AbortError);
    }
  });
});

describe("melbo, caa, evalAb, generate", () => {
  it("melbo: the file the CLI writes, bit for bit; abort at a step", async () => {
    const r = await nodeApi.melbo({ model: TINY, prompts: [PROMPT], ...SITE, numVectors: 2, steps: 6 });
    expect(r.vectors).toHaveLength(2);
    r.vectors.forEach((v) => expect(Math.hypot(...v)).toBeCloseTo(r.radius, 3));
    const out = join(dir, "melbo.safetensors");
    const cli = jacsteer(["melbo", "--tokens", PROMPT.join(","), "--source-layer", "1", "--target-layer", "2", "--num-vectors", "2", "--steps", "6", "--out", out]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(Buffer.from(encodeVectorFile(r)).equals(readFileSync(out))).toBe(true);

    const ac = new AbortController();
    const mark = rt.heap.mark();
    const run = lib.melbo({ model: ckpt, runtime: rt, prompts: [PROMPT], ...SITE, numVectors: 2, steps: 50, signal: ac.signal, onProgress: (p) => p.step === 3 && ac.abort() });
    await expect(run).rejects.toBeInstanceOf(lib.AbortError);
    expect(rt.heap.mark()).toBe(mark);
    // the neutral entry's melbo still carries the MELBO building blocks
    expect(typeof lib.melbo.trainMelbo).toBe("function");
    expect(typeof lib.caa.caaVectorBatched).toBe("function");
  });

  it("caa and evalAb on a dataset's text (the train / held-out split), evalAb steered by the caa vector; abort mid-run", async () => {
    const text = readFileSync(DATASET, "utf8");
    const c = await nodeApi.caa({ model: TINY, dataset: { text, trainFraction: 0.5, seed: 1 }, sourceLayer: 1, threads: 2 });
    expect(c.vectors).toHaveLength(1);
    expect(c.rawNorm).toBeCloseTo(Math.hypot(...c.vector), 3);
    expect(c.metadata.method).toBe("caa");
    const e = await nodeApi.evalAb({ model: TINY, dataset: { text, trainFraction: 0.5, seed: 1 }, vectors: [{ vector: c.vector, sourceLayer: c.sourceLayer, label: "caa" }], scales: [-2, 0, 2] });
    const used = (x: { items: Record<string, unknown> }) => x.items.used as string[];
    expect(used(c).filter((u) => used(e).includes(u))).toEqual([]); // complementary items
    expect(e.layer).toBe(1);
    expect(e.summary.rows.map((row) => row.scale)).toEqual([-2, 0, 2]);
    expect(e.rows).toHaveLength(used(e).length * 4);
    // scale 0 is not run again: its rows carry the unsteered run's logits
    const zero = e.rows.filter((row) => row.vector !== null && row.scale === 0), base = e.rows.filter((row) => row.vector === null);
    expect(zero.map((row) => row.diff)).toEqual(base.map((row) => row.diff));
    // a vector with a non-finite entry is refused by name, not run into NaN rows
    const bad = Float32Array.from(c.vector);
    bad[3] = NaN;
    await expect(nodeApi.evalAb({ model: TINY, dataset: { text }, vectors: [{ vector: bad, label: "bad" }], scales: [1] })).rejects.toThrow(/^bad: entry 3 is NaN, not a finite number$/);

    const mark = rt.heap.mark();
    for (const call of [
      (signal: AbortSignal, abort: () => void) => lib.evalAb({ model: ckpt, runtime: rt, tokenizer: () => import("../../src/node/tokenizer-files.js").then((m) => m.loadTokenizerFromDir(TINY)), dataset: { text }, signal, onProgress: ({ done }) => done === 1 && abort() }),
      (signal: AbortSignal, abort: () => void) => lib.caa({ model: ckpt, runtime: rt, tokenizer: () => import("../../src/node/tokenizer-files.js").then((m) => m.loadTokenizerFromDir(TINY)), dataset: { text }, signal, activationBytes: 4096, onProgress: ({ done }) => done === 2 && abort() }),
    ]) {
      const ac = new AbortController();
      await expect(call(ac.signal, () => ac.abort())).rejects.toBeInstanceOf(lib.AbortError);
      expect(rt.heap.mark()).toBe(mark);
    }
  });

  it("generate: vectors x scales x prompts, tokens streamed in order; abort at a token", async () => {
    const v = new Float32Array(ckpt.config.hiddenSize).fill(0.5);
    const streamed: number[][] = [[], [], [], []];
    const g = await nodeApi.generate({ model: TINY, prompts: [PROMPT, "Once"], vectors: [{ vector: v }], scales: [0, 3], layer: 1, maxNewTokens: 5, ignoreEos: true, onToken: (i, id) => streamed[i].push(id) });
    expect(g.generations.map((x) => [x.scale, x.prompt])).toEqual([[0, 0], [0, 1], [3, 0], [3, 1]]);
    g.generations.forEach((x, i) => {
      expect(x.tokens).toHaveLength(5);
      expect(x.tokens).toEqual(streamed[i]);
      expect(typeof x.text).toBe("string");
    });
    const u = await nodeApi.generate({ model: TINY, prompts: [PROMPT], maxNewTokens: 5, ignoreEos: true });
    expect(u.generations[0].tokens).toEqual(g.generations[0].tokens); // scale 0 is unsteered

    const ac = new AbortController();
    const mark = rt.heap.mark();
    const run = lib.generate({ model: ckpt, runtime: rt, prompts: [PROMPT], maxNewTokens: 20, ignoreEos: true, signal: ac.signal, onToken: (_i, _id, step) => step === 2 && ac.abort() });
    await expect(run).rejects.toBeInstanceOf(lib.AbortError);
    expect(rt.heap.mark()).toBe(mark);
  });
});
