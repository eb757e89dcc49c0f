// Matrix-product throughput on one thread, both kernel builds, beside naive loops measured in the same
// run. Shapes are Qwen3-0.6B-like linear layers (hidden 1024, MLP 3072). Writes
// bench/results/matmul.json and bench/results/matmul.md.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createNodeRuntime, packageRoot } from "../src/node/runtime.js";
import type { Runtime } from "../src/runtime/runtime.js";
import type { KernelBuild } from "../src/runtime/kernels.js";
import { gemmPacked, matmulAB, matmulABt, matmulABtNaive, matmulAtB, packBt, packedFloats } from "../src/kernels/matmul.js";
import { gflops, machineInfo, machineLine, markdownTable, measure } from "./harness.js";

/** C[M, N] = A[M, K] * W^T with W [N, K]. */
const SHAPES: Array<{ M: number; K: number; N: number }> = [
  { M: 64, K: 1024, N: 3072 },
  { M: 256, K: 1024, N: 1024 },
  { M: 1024, K: 1024, N: 1024 },
];
const BUILDS: KernelBuild[] = ["simd", "relaxed-simd"];
/** Naive loops run on the first NAIVE_ROWS rows of A only: GFLOP/s of a scalar loop do not depend on M. */
const NAIVE_ROWS = 16;

const KERNELS = [
  { id: "gemmPacked", what: "A*B^T, B [N,K] packed once (gemmPacked)" },
  { id: "matmulABt", what: "A*B^T, B packed every call (matmulABt)" },
  { id: "matmulAB", what: "A*B, B [K,N] packed every call (matmulAB)" },
  { id: "matmulAtB", what: "A^T*B, A [K,M] transposed + B packed every call (matmulAtB)" },
  { id: "naiveWasm", what: `naive wasm A*B^T (matmulABtNaive), first ${NAIVE_ROWS} rows` },
  { id: "naiveJs", what: `naive JavaScript A*B^T loop, first ${NAIVE_ROWS} rows` },
] as const;
type KernelId = (typeof KERNELS)[number]["id"];

export interface MatmulResult {
  build: KernelBuild;
  kernel: KernelId;
  M: number;
  K: number;
  N: number;
  medianMs: number;
  minMs: number;
  reps: number;
  gflopsMedian: number;
  gflopsBest: number;
}

function fillRandom(x: Float32Array, seed: number): void {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < x.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    x[i] = (s >>> 0) / 4294967296 - 0.5;
  }
}

/** The plain loop a JavaScript programmer would write: C[m, n] = sum_k A[m, k] * B[n, k]. */
function naiveJs(a: Float32Array, b: Float32Array, c: Float32Array, M: number, N: number, K: number): void {
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * b[n * K + k];
      c[m * N + n] = s;
    }
  }
}

function benchShape(rt: Runtime, build: KernelBuild, M: number, K: number, N: number, log: (s: string) => void): MatmulResult[] {
  return rt.heap.scope(() => {
    const pa = rt.heap.allocF32(M * K);
    const pw = rt.heap.allocF32(N * K);
    const pc = rt.heap.allocF32(M * N);
    const pref = rt.heap.allocF32(NAIVE_ROWS * N);
    const pp = rt.heap.allocF32(packedFloats(N, K));
    fillRandom(rt.heap.f32(pa, M * K), 1);
    fillRandom(rt.heap.f32(pw, N * K), 2);
    const packed = packBt(rt, pw, N, K, pp);

    const results: MatmulResult[] = [];
    const record = (kernel: KernelId, rows: number, fn: () => void) => {
      const t = measure(fn, rows < M ? { warmup: 1, minReps: 3, maxReps: 10, budgetMs: 1000 } : {});
      const flops = 2 * rows * N * K;
      const r: MatmulResult = {
        build, kernel, M: rows, K, N,
        medianMs: t.medianMs, minMs: t.minMs, reps: t.reps,
        gflopsMedian: gflops(flops, t.medianMs), gflopsBest: gflops(flops, t.minMs),
      };
      results.push(r);
      log(`  ${build.padEnd(12)} ${`${M}x${K}*${K}x${N}`.padEnd(20)} ${kernel.padEnd(11)} ${r.gflopsMedian.toFixed(1).padStart(6)} GFLOP/s median, ${r.gflopsBest.toFixed(1).padStart(6)} best (${t.reps} reps, ${t.medianMs.toFixed(2)} ms)`);
    };

    record("gemmPacked", M, () => gemmPacked(rt, pa, packed, pc, M));
    // Guard against timing a wrong kernel: compare the first rows with the naive wasm kernel.
    matmulABtNaive(rt, pa, pw, pref, NAIVE_ROWS, N, K);
    const got = rt.heap.f32(pc, NAIVE_ROWS * N), want = rt.heap.f32(pref, NAIVE_ROWS * N);
    let err = 0, mag = 0;
    for (let i = 0; i < got.length; i++) {
      err = Math.max(err, Math.abs(got[i] - want[i]));
      mag = Math.max(mag, Math.abs(want[i]));
    }
    if (!(err <= 1e-4 * mag)) throw new Error(`gemmPacked disagrees with matmulABtNaive: max error ${err} (max |C| ${mag})`);

    record("matmulABt", M, () => matmulABt(rt, pa, pw, pc, M, N, K));
    // A*B with B = W^T [K, N]: the same numbers of flops, W read as [K, N].
    record("matmulAB", M, () => matmulAB(rt, pa, pw, pc, M, N, K));
    // A^T*B with A given as [K, M] (the same buffer read transposed).
    record("matmulAtB", M, () => matmulAtB(rt, pa, pw, pc, M, N, K));
    record("naiveWasm", NAIVE_ROWS, () => matmulABtNaive(rt, pa, pw, pref, NAIVE_ROWS, N, K));
    if (build === BUILDS[0]) {
      // The JavaScript loop does not depend on the build: measure it once per shape.
      const a = rt.heap.f32(pa, M * K).slice(0, NAIVE_ROWS * K), w = rt.heap.f32(pw, N * K).slice(), c = new Float32Array(NAIVE_ROWS * N);
      record("naiveJs", NAIVE_ROWS, () => naiveJs(a, w, c, NAIVE_ROWS, N, K));
    }
    return results;
  });
}

export async function benchMatmul(opts: { log?: (s: string) => void; write?: boolean } = {}): Promise<MatmulResult[]> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const machine = machineInfo();
  log(`matmul, one thread: ${machineLine(machine)}`);
  const results: MatmulResult[] = [];
  for (const build of BUILDS) {
    const rt = await createNodeRuntime({ prefer: build });
    if (rt.build !== build) throw new Error(`asked for the ${build} build, got ${rt.build}`);
    for (const { M, K, N } of SHAPES) results.push(...benchShape(rt, build, M, K, N, log));
  }
  if (opts.write !== false) writeResults(machine, results);
  return results;
}

function writeResults(machine: ReturnType<typeof machineInfo>, results: MatmulResult[]): void {
  const dir = join(packageRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "matmul.json"), JSON.stringify({ bench: "matmul", threads: 1, machine, naiveRows: NAIVE_ROWS, results }, null, 2) + "\n");

  const cell = (build: KernelBuild, kernel: KernelId, M: number, K: number, N: number) => {
    const r = results.find((x) => x.build === build && x.kernel === kernel && x.K === K && x.N === N && (x.M === M || x.M === NAIVE_ROWS && kernel.startsWith("naive")));
    return r ? `${r.gflopsMedian.toFixed(1)} (${r.gflopsBest.toFixed(1)})` : "–";
  };
  const rows: string[][] = [];
  for (const { M, K, N } of SHAPES) {
    for (const k of KERNELS) {
      rows.push([`${M}x${K} * ${K}x${N}`, k.what, ...BUILDS.map((b) => (k.id === "naiveJs" && b !== BUILDS[0] ? "(same loop)" : cell(b, k.id, M, K, N)))]);
    }
  }
  const md = [
    "# Matrix products, one thread",
    "",
    `Machine: ${machineLine(machine)}.`,
    "",
    "GFLOP/s = 2·M·N·K / time, median over the repetitions (best in parentheses). A is [M,K], the weight",
    "B is [N,K] (Hugging Face [out, in]); the A*B and A^T*B rows read the same buffers in those layouts.",
    `Naive loops are timed on the first ${NAIVE_ROWS} rows of A only (a scalar loop's rate does not depend on M)`,
    "and are in the same run. Regenerate with `npm run bench`.",
    "",
    markdownTable(["shape (A * B^T)", "kernel", ...BUILDS.map((b) => `${b} build`)], rows),
    "",
  ].join("\n");
  writeFileSync(join(dir, "matmul.md"), md);
}
