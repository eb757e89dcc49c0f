// Matrix products split over threads (src/engine/parallel-gemm.ts, src/node/thread-pool.ts): the
// panel partition covers every column once; split products are bitwise equal to one call for any
// thread count (with chained accumulation into one C, strided rows, N not a multiple of 8) and agree
// with a float64 reference; `threads 1` starts no worker; a closed pool refuses work and lets the
// process exit. Worker threads need `npm run build` (dist/workers).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createNodeRuntime, packageRoot } from "../../src/node/runtime.js";
import { createParallelGemm, defaultWorkerFile, PiscinaGemm } from "../../src/node/thread-pool.js";
import { SerialGemm, gemmDispatchCost, gemmFlops, gemmSlices, SLICE_ARGS, type GemmJob, type ParallelGemm } from "../../src/engine/parallel-gemm.js";
import { packBt, packB, packedFloats, PANEL } from "../../src/kernels/matmul.js";
import type { Runtime } from "../../src/runtime/runtime.js";
import { randn, rng } from "../helpers/random.js";

const built = existsSync(defaultWorkerFile());
const pools: ParallelGemm[] = [];
afterAll(async () => {
  for (const p of pools) await p.close();
});

describe("gemmSlices", () => {
  it("gives every 8-column panel of every job to exactly one part, in job order", () => {
    for (const N of [0, 1, 7, 8, 9, 37, 64, 1000]) {
      for (let parts = 1; parts <= 5; parts++) {
        const K = 3;
        const job: GemmJob = { a: 0, packed: { ptr: 1 << 20, n: N, k: K }, c: 2 << 20, m: 4, accumulate: true };
        const cols = new Array<number>(N).fill(0);
        for (let part = 0; part < parts; part++) {
          const s = gemmSlices([job, job], part, parts);
          expect(s.length % SLICE_ARGS).toBe(0);
          for (let i = 0; i < s.length; i += SLICE_ARGS) {
            const n0 = (s[i + 3]! - job.c) / 4;
            expect(n0 % PANEL).toBe(0);
            expect(s[i + 2]).toBe(job.packed.ptr + 4 * n0 * K); // packed panel of column n0
            for (let c = n0; c < n0 + s[i + 6]!; c++) cols[c]! += 1;
          }
        }
        expect(cols.every((x) => x === 2), `N=${N} parts=${parts}`).toBe(true);
      }
    }
  });
});

/** Random A [M, lda] and weights; jobs: y1 = A W1^T (N 37), y2 = A W2^T (N 64, strided C), gx = G Wa + H Wb (chained). */
function setup(rt: Runtime) {
  const r = rng(3);
  const M = 13, K = 29, lda = 31;
  const put = (data: ArrayLike<number>) => {
    const p = rt.heap.allocF32(data.length);
    rt.heap.f32(p, data.length).set(Array.from(data));
    return p;
  };
  const A = randn(r, M * lda), W1 = randn(r, 37 * K), W2 = randn(r, 64 * K), Wa = randn(r, 21 * 19), Wb = randn(r, 17 * 19), G = randn(r, M * 21), H = randn(r, M * 17);
  const pA = put(A), pG = put(G), pH = put(H);
  const p1 = packBt(rt, put(W1), 37, K), p2 = packBt(rt, put(W2), 64, K);
  const pa = packB(rt, put(Wa), 21, 19), pb = packB(rt, put(Wb), 17, 19);
  const c1 = rt.heap.allocF32(M * 37), c2 = rt.heap.allocF32(M * 70), cx = rt.heap.allocF32(M * 19);
  const jobs: GemmJob[] = [
    { a: pA, lda, packed: p1, c: c1, m: M },
    { a: pA, lda, packed: p2, c: c2, ldc: 70, m: M },
    { a: pG, packed: pa, c: cx, m: M },
    { a: pH, packed: pb, c: cx, m: M, accumulate: true },
  ];
  const read = () => [Array.from(rt.heap.f32(c1, M * 37)), Array.from(rt.heap.f32(c2, M * 70)), Array.from(rt.heap.f32(cx, M * 19))];
  const clear = () => [c1, c2, cx].forEach((c, i) => rt.k.fill(c, M * [37, 70, 19][i]!, 0));
  // float64 reference
  const ref1 = Array.from({ length: M * 37 }, (_, i) => {
    const m = Math.floor(i / 37), n = i % 37;
    let s = 0;
    for (let k = 0; k < K; k++) s += A[m * lda + k]! * W1[n * K + k]!;
    return s;
  });
  const refx = Array.from({ length: M * 19 }, (_, i) => {
    const m = Math.floor(i / 19), n = i % 19;
    let s = 0;
    for (let k = 0; k < 21; k++) s += G[m * 21 + k]! * Wa[k * 19 + n]!;
    for (let k = 0; k < 17; k++) s += H[m * 17 + k]! * Wb[k * 19 + n]!;
    return s;
  });
  return { jobs, read, clear, ref1, refx };
}

describe("SerialGemm and the Piscina pool", async () => {
  const rt = await createNodeRuntime();
  const s = setup(rt);

  it("threads 1 is SerialGemm: no worker is started", async () => {
    const g = await createParallelGemm(rt, 1);
    expect(g).toBeInstanceOf(SerialGemm);
    expect(g.threads).toBe(1);
    await expect(createParallelGemm(rt, 0)).rejects.toThrow(/positive integer/);
  });

  it("SerialGemm matches a float64 reference (strided A and C, chained accumulation)", () => {
    s.clear();
    new SerialGemm(rt).run(s.jobs);
    const [c1, , cx] = s.read();
    c1!.forEach((x, i) => expect(Math.abs(x - s.ref1[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(s.ref1[i]!))));
    cx!.forEach((x, i) => expect(Math.abs(x - s.refx[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(s.refx[i]!))));
  });

  it.runIf(built)("2 and 3 threads give bitwise the same products as 1, and a closed pool refuses work", async () => {
    s.clear();
    new SerialGemm(rt).run(s.jobs);
    const want = s.read();
    for (const t of [2, 3]) {
      const g = await createParallelGemm(rt, t, { minParallelFlops: 0 });
      pools.push(g);
      expect(g).toBeInstanceOf(PiscinaGemm);
      expect(g.threads).toBe(t);
      for (let rep = 0; rep < 3; rep++) {
        s.clear();
        await g.run(s.jobs);
        expect(s.read()).toEqual(want);
      }
      // The workers take part once a dispatch outlasts their wake-up (units of ~0.1 ms here).
      const M = 64, K = 512, N = 512;
      const big: GemmJob = { a: rt.heap.allocF32(M * K), packed: packBt(rt, rt.heap.allocF32(N * K), N, K), c: rt.heap.allocF32(M * N), m: M };
      const before = (g as PiscinaGemm).workerUnits;
      for (let rep = 0; rep < 10; rep++) await g.run([big]);
      expect((g as PiscinaGemm).workerUnits).toBeGreaterThan(before);
      await g.close();
      await g.close(); // idempotent
      expect(() => g.run(s.jobs)).toThrow(/closed/);
    }
  });

  it("a product's dispatch cost counts the weight it reads: one row against a stored BF16 weight is not a small job", () => {
    const N = 1896, K = 2048;
    const decode: GemmJob = { a: 0, m: 1, packed: { ptr: 0, n: N, k: K }, pack: { src: 1, kind: 2, ld: K }, c: 0 };
    expect(gemmFlops([decode])).toBe(2 * N * K);
    expect(gemmFlops([decode])).toBeLessThan(8e6); // below the default threshold by its flops alone
    expect(gemmDispatchCost([decode])).toBe(10 * N * K); // 2 flops + 8 for reading each element
    const packedOnce: GemmJob = { ...decode, pack: undefined };
    expect(gemmDispatchCost([packedOnce])).toBe(2 * N * K);
    expect(gemmDispatchCost([decode, packedOnce])).toBe(12 * N * K);
  });

  it.runIf(built)("with the default threshold, that one-row product runs on every thread (bitwise as on one)", async () => {
    const N = 1896, K = 2048;
    const mark = rt.heap.mark();
    try {
      const r = rng(7);
      const w = rt.heap.allocF32((N * K) / 2); // BF16 bytes: the upper halves of random f32 values
      const bf16 = new Uint16Array(rt.heap.f32(w, 1).buffer, w, N * K);
      const f32 = Float32Array.from(randn(r, N * K));
      bf16.set(new Uint16Array(f32.buffer).filter((_, i) => i % 2 === 1));
      const a = rt.heap.allocF32(K);
      rt.heap.f32(a, K).set(randn(r, K));
      const job = (c: number): GemmJob => ({ a, m: 1, packed: { ptr: rt.heap.allocF32(packedFloats(N, K)), n: N, k: K }, pack: { src: w, kind: /* A W^T, BF16 */ 0 | (1 << 1), ld: K }, c });
      const c1 = rt.heap.allocF32(N), c2 = rt.heap.allocF32(N);
      new SerialGemm(rt).run([job(c1)]);
      const g = await createParallelGemm(rt, 2);
      pools.push(g);
      const j2 = job(c2);
      for (let rep = 0; rep < 20; rep++) await g.run([j2]);
      expect((g as PiscinaGemm).workerUnits).toBeGreaterThan(0);
      expect(rt.heap.f32(c2, N)).toEqual(rt.heap.f32(c1, N));
      await g.close();
    } finally {
      rt.heap.release(mark);
    }
  });

  it.runIf(built)("a process that used and closed a pool exits on its own", () => {
    const root = packageRoot();
    const script = `
      import { createNodeRuntime } from ${JSON.stringify(join(root, "dist/src/node/runtime.js"))};
      import { createParallelGemm } from ${JSON.stringify(join(root, "dist/src/node/thread-pool.js"))};
      import { packBt } from ${JSON.stringify(join(root, "dist/src/kernels/matmul.js"))};
      const rt = await createNodeRuntime();
      const g = await createParallelGemm(rt, 2, { minParallelFlops: 0 });
      const a = rt.heap.allocF32(64 * 64), w = rt.heap.allocF32(64 * 64), c = rt.heap.allocF32(64 * 64);
      rt.k.fill(a, 64 * 64, 1); rt.k.fill(w, 64 * 64, 2);
      await g.run([{ a, packed: packBt(rt, w, 64, 64), c, m: 64 }]);
      await g.close();
      console.log(rt.heap.f32(c, 1)[0]);
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 30_000 });
    expect(r.error, "the process did not exit within 30 s").toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("128");
  });

  it("the worker entry is built (else the tests above are skipped)", () => {
    expect(built, `${defaultWorkerFile()} missing: run \`npm run build\``).toBe(true);
  });
});
