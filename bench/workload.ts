// The workload of issue 5, jacsteer beside the seed's PyTorch procedure in the same run:
// a Qwen3-0.6B-shaped BF16 checkpoint (random weights, bench/make-checkpoint.ts), a 32-token prompt,
// S = 6, T = 20, K = 4, top 8.
//
//   (a) PyTorch (bench/torch_seed.py, system python3-torch on the CPU, same thread count): the seed's
//       double VJP with the forward re-run for every product, block power iteration, 3 iterations +
//       Rayleigh-Ritz (32 products);
//   (b) jacsteer, the same algorithm from the same start block (32 products);
//   (c) jacsteer's default solver (block Lanczos) to residual <= 1e-3 sigma_1^2;
//   (d) product counts to residual <= 1e-3 for block power iteration and block Lanczos on the
//       workload's own J^T J, formed explicitly once (d forward-mode products, cached in
//       bench/.cache/): power iteration needs thousands of products here, too many to run on the
//       model operator inside a bench, while on the explicit matrix each product costs a millisecond.
//       The same matrix gives the exact top 8, so (a)-(c) are checked against it and (c)'s residuals
//       are recomputed independently.
//
// Every run is a separate process timed from the outside (spawn to exit: load, compile, forward,
// products), reporting its own peak RSS. Writes bench/results/workload.json and workload.md.
//
//   npm run bench -- workload           (or: node --experimental-wasm-relaxed-simd dist/bench/run.js workload)
//   node --experimental-wasm-relaxed-simd dist/bench/workload.js [--no-torch] [--no-explicit] [--operator autodiff|engine] [--threads N]
//
// The jacsteer side gets J^T J V from an operator factory: DEFAULT_OPERATOR below picks it (the
// autodiff path or the batched engine); switching is that one line, or `--operator engine`.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { dot } from "../src/linalg/dense.js";
import { packageRoot } from "../src/node/runtime.js";
import { blockLanczos, blockLanczosAsync, DEFAULT_RESIDUAL_TOL } from "../src/solvers/block-lanczos.js";
import { blockPowerIteration, blockPowerIterationAsync } from "../src/solvers/block-power.js";
import { randomBlock, type BlockOperator, type NormalOperator, type Progress, type SolveResult } from "../src/solvers/common.js";
import { symmetricEigenTridiagonal } from "../src/solvers/symmetric-eigen.js";
import { machineInfo, machineLine, markdownTable, type MachineInfo } from "./harness.js";
import { BENCH_CHECKPOINT_SEED, benchCacheDir, ensureBenchCheckpoint } from "./make-checkpoint.js";

// ---------------------------------------------------------------------------------------------
// The workload

export interface Workload {
  model: string;
  tokens: number[];
  sourceLayer: number;
  targetLayer: number;
  positions: number;
  numVectors: number;
  /** Block power iterations of the seed's procedure (plus the final Rayleigh-Ritz application). */
  seedIters: number;
  /** Residual threshold, relative to sigma_1^2. */
  tol: number;
  seed: number;
  threads: number;
  /** Which implementation forms jacsteer's products. */
  operator: OperatorName;
}

/** 32 token ids, fixed: a linear congruential sequence over the vocabulary (random weights make any ids alike). */
export function workloadTokens(count = 32, vocab = 151936): number[] {
  const out: number[] = [];
  let s = 1;
  for (let i = 0; i < count; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out.push(s % Math.min(vocab, 151000));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// How jacsteer forms products: the operator factory

/** What the bench needs from an implementation of the steering Jacobian. */
export interface JacobianOperator {
  /** One line for the report: which code path, which kernels. */
  readonly description: string;
  /** Threads the products actually use. */
  readonly threads: number;
  readonly inputDim: number;
  readonly outputDim: number;
  /** J^T J V for a block V. */
  readonly normal: BlockOperator;
  /** J V for a block V (to form J explicitly). */
  jacobian(V: readonly Float64Array[]): Promise<Float64Array[]> | Float64Array[];
  close(): Promise<void> | void;
}

export type OperatorFactory = (w: Workload) => Promise<JacobianOperator>;

/** The autodiff path: SteeringJacobian (graph recorded once), forward-mode J v then one VJP, one vector at a time. */
export const autodiffOperator: OperatorFactory = async (w) => {
  const { loadModel } = await import("../src/cli/session.js");
  const { SteeringJacobian } = await import("../src/jacobian/steering-jacobian.js");
  const { rt, ckpt, model } = await loadModel(w.model, { layers: w.targetLayer + 1, head: false });
  const J = new SteeringJacobian(model, [w.tokens], { sourceLayer: w.sourceLayer, targetLayer: w.targetLayer, positions: w.positions });
  return {
    description: `autodiff SteeringJacobian.normalProduct(jvp), one vector at a time, ${rt.build} kernels`,
    threads: 1,
    inputDim: J.inputDim,
    outputDim: J.outputDim,
    normal: { dim: J.inputDim, applyBlock: (V) => V.map((v) => Float64Array.from(J.normalProduct(Float32Array.from(v), "jvp"))) },
    jacobian: (V) => V.map((v) => Float64Array.from(J.apply(Float32Array.from(v)))),
    close: () => ckpt.close(),
  };
};

/** The batched engine: SteeringEngine.normalProducts on the whole block, matrix products on `threads` threads. */
export const engineOperator: OperatorFactory = async (w) => {
  const { SteeringEngine } = await import("../src/engine/steering-engine.js");
  const { createParallelGemm } = await import("../src/node/thread-pool.js");
  const { openCheckpoint } = await import("../src/node/checkpoint.js");
  const { openSafetensorsFile } = await import("../src/node/safetensors-file.js");
  const { createNodeRuntime } = await import("../src/node/runtime.js");
  const rt = await createNodeRuntime();
  const ckpt = openCheckpoint(w.model);
  // Row reads: the engine then reads the prompt's 32 embedding rows, not the whole 300 MB matrix.
  const reader = openSafetensorsFile(join(w.model, "model.safetensors"));
  const tensors = { ...ckpt.tensors, readRowsF32: (name: string, row0: number, rows: number, dst: Float32Array) => void reader.readRowsF32(name, row0, rows, dst) };
  const gemm = await createParallelGemm(rt, w.threads);
  const site = { sourceLayer: w.sourceLayer, targetLayer: w.targetLayer, positions: w.positions };
  const engine = await SteeringEngine.create(rt, ckpt.config, tensors, [w.tokens], site, { gemm, log: (s) => process.stderr.write(s + "\n") });
  reader.close();
  ckpt.close();
  return {
    description: `SteeringEngine.normalProducts (batched block), ${rt.build} kernels, ${engine.threads} thread(s)`,
    threads: engine.threads,
    inputDim: engine.inputDim,
    outputDim: engine.outputDim,
    normal: { dim: engine.inputDim, applyBlock: (V) => engine.normalProducts(V) },
    jacobian: async (V) => (await engine.applyJ(V)).map((x) => Float64Array.from(x)),
    close: () => engine.close(),
  };
};

export const OPERATORS = { autodiff: autodiffOperator, engine: engineOperator } as const;
export type OperatorName = keyof typeof OPERATORS;

/** The batched engine is the project's path (power-iter --method lanczos/power); `--operator autodiff` measures the reference. */
export const DEFAULT_OPERATOR: OperatorName = "engine";

// ---------------------------------------------------------------------------------------------
// Child processes: one timed run each

type ChildJob =
  | { kind: "power"; workload: Workload; initFile: string }
  | { kind: "lanczos"; workload: Workload; maxProducts: number }
  | { kind: "explicit"; workload: Workload; outFile: string };

export interface RunReport {
  description: string;
  threads: number;
  products: number;
  iterations: number;
  converged: boolean;
  /** Time inside the operator divided by the products. */
  secondsPerProduct: number;
  /** Model load, compile and the forward at sv0 (before the first product). */
  setupSeconds: number;
  solveSeconds: number;
  peakRssBytes: number;
  singularValues: number[];
  residuals: number[];
  relativeResiduals: number[];
  vectors: number[][];
}

async function runChild(job: ChildJob): Promise<void> {
  const t0 = performance.now();
  const log = (s: string) => process.stderr.write(s + "\n");
  const J = await OPERATORS[job.workload.operator](job.workload);
  const setupSeconds = (performance.now() - t0) / 1000;
  let inOperator = 0;
  const timed: BlockOperator = {
    dim: J.inputDim,
    async applyBlock(V) {
      const t = performance.now();
      const W = await J.normal.applyBlock(V);
      inOperator += performance.now() - t;
      return W;
    },
  };
  const w = job.workload;
  const progress = (name: string) => (p: Progress) =>
    log(`  ${name} iter ${p.iteration}: ${p.products} products, ${(inOperator / 1000).toFixed(1)} s; sigma ${p.sigmas.map((s) => s.toFixed(4)).join(" ")}; max residual/sigma1^2 ${Math.max(...(p.relativeResiduals ?? [NaN])).toExponential(2)}`);
  let res: SolveResult;
  const ts = performance.now();
  if (job.kind === "explicit") {
    // Columns J e_i, a block at a time, then A = J^T J in float64.
    const d = J.inputDim, m = J.outputDim;
    const cols: Float64Array[] = [];
    for (let i = 0; i < d; i += w.numVectors) {
      const E = Array.from({ length: Math.min(w.numVectors, d - i) }, (_, k) => {
        const e = new Float64Array(d);
        e[i + k] = 1;
        return e;
      });
      cols.push(...(await J.jacobian(E)));
      if ((i / w.numVectors) % 16 === 0) log(`  explicit J: ${cols.length} of ${d} columns, ${((performance.now() - ts) / 1000).toFixed(0)} s`);
    }
    const A = new Float64Array(d * d);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j <= i; j++) {
        let s = 0;
        const a = cols[i], b = cols[j];
        for (let k = 0; k < m; k++) s += a[k] * b[k];
        A[i * d + j] = A[j * d + i] = s;
      }
    }
    writeFileSync(job.outFile, new Uint8Array(A.buffer));
    process.stdout.write(JSON.stringify({ columns: d, seconds: (performance.now() - ts) / 1000, peakRssBytes: process.resourceUsage().maxRSS * 1024 }) + "\n");
    await J.close();
    return;
  } else if (job.kind === "power") {
    const init = (JSON.parse(readFileSync(job.initFile, "utf8")) as number[][]).map((v) => Float64Array.from(v));
    res = await blockPowerIterationAsync(timed, { numVectors: w.numVectors, maxIters: w.seedIters, tol: 0, seed: w.seed, init, onProgress: progress("power") });
  } else {
    res = await blockLanczosAsync(timed, { numVectors: w.numVectors, tol: w.tol, seed: w.seed, maxProducts: job.maxProducts, onProgress: progress("lanczos") });
  }
  const solveSeconds = (performance.now() - ts) / 1000;
  const report: RunReport = {
    description: J.description,
    threads: J.threads,
    products: res.products,
    iterations: res.iterations,
    converged: res.converged,
    secondsPerProduct: inOperator / 1000 / res.products,
    setupSeconds,
    solveSeconds,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    singularValues: res.singularValues,
    residuals: res.residuals,
    relativeResiduals: res.relativeResiduals,
    vectors: res.vectors.map((v) => Array.from(v)),
  };
  await J.close();
  process.stdout.write(JSON.stringify(report) + "\n");
}

interface Spawned<T> {
  /** Spawn to exit, measured here. */
  wallSeconds: number;
  /** 1-minute load average before the run (other work on the machine skews timings). */
  loadBefore: number;
  report: T;
}

function spawnTimed<T>(cmd: string, args: string[], what: string, timeoutSeconds: number): Spawned<T> {
  const loadBefore = os.loadavg()[0];
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ["ignore", "pipe", "inherit"], maxBuffer: 256 << 20, timeout: timeoutSeconds * 1000, encoding: "utf8" });
  const wallSeconds = (performance.now() - t0) / 1000;
  if (r.error) throw new Error(`${what}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${what}: exit status ${r.status ?? r.signal}`);
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  return { wallSeconds, loadBefore, report: JSON.parse(last) as T };
}

function spawnChild<T>(job: ChildJob, cacheDir: string, timeoutSeconds: number): Spawned<T> {
  const jobFile = join(cacheDir, `workload-job-${job.kind}.json`);
  writeFileSync(jobFile, JSON.stringify(job));
  return spawnTimed<T>(process.execPath, ["--experimental-wasm-relaxed-simd", fileURLToPath(import.meta.url), "--child", jobFile], `jacsteer ${job.kind} run`, timeoutSeconds);
}

// ---------------------------------------------------------------------------------------------
// The PyTorch side

interface TorchReport {
  implementation: string;
  torch: string;
  threads: number;
  blas: string[];
  products: number;
  seconds_per_product: number;
  load_seconds: number;
  solve_seconds: number;
  peak_rss_bytes: number;
  singular_values: number[];
  residuals: number[];
  relative_residuals: number[];
  vectors: number[][];
}

const PYTHON = "/usr/bin/python3";

function runTorch(w: Workload, initFile: string): Spawned<TorchReport> {
  const script = join(packageRoot(), "bench", "torch_seed.py");
  return spawnTimed<TorchReport>(
    PYTHON,
    [script, "--model", w.model, "--tokens", w.tokens.join(","), "--source-layer", String(w.sourceLayer), "--target-layer", String(w.targetLayer),
      "--positions", String(w.positions), "--num-vectors", String(w.numVectors), "--iters", String(w.seedIters), "--threads", String(w.threads), "--init-json", initFile],
    "PyTorch run",
    900,
  );
}

// ---------------------------------------------------------------------------------------------
// The explicit J^T J: exact answer and product counts

interface ExplicitAnalysis {
  /** Top eigenvalues of J^T J as singular values (the first 16). */
  exactSigmas: number[];
  powerProducts: number;
  powerConverged: boolean;
  lanczosProducts: number;
  lanczosConverged: boolean;
  /** Lanczos products to the tolerance by block size. */
  lanczosByBlockSize: Array<{ blockSize: number; products: number; converged: boolean }>;
}

function explicitOperator(A: Float64Array, d: number): NormalOperator {
  return {
    dim: d,
    apply(v) {
      const out = new Float64Array(d);
      for (let i = 0; i < d; i++) {
        let s = 0;
        const o = i * d;
        for (let k = 0; k < d; k++) s += A[o + k] * v[k];
        out[i] = s;
      }
      return out;
    },
  };
}

function analyseExplicit(A: Float64Array, w: Workload, log: (s: string) => void): { analysis: ExplicitAnalysis; top: Float64Array[]; op: NormalOperator } {
  const d = Math.round(Math.sqrt(A.length));
  const rows = Array.from({ length: d }, (_, i) => A.subarray(i * d, (i + 1) * d));
  const t0 = performance.now();
  const eig = symmetricEigenTridiagonal(rows);
  log(`  exact eigen-decomposition of the ${d} x ${d} J^T J: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const top = Array.from({ length: w.numVectors }, (_, c) => Float64Array.from({ length: d }, (_, r) => eig.vectors[r][c]));
  const op = explicitOperator(A, d);
  const power = blockPowerIteration(op, { numVectors: w.numVectors, maxIters: 20000, tol: 0, residualTol: w.tol, seed: w.seed });
  const lanczos = blockLanczos(op, { numVectors: w.numVectors, tol: w.tol, seed: w.seed });
  const byBlock = [1, 2, 4, 8, 16].map((b) => {
    const r = blockLanczos(op, { numVectors: w.numVectors, tol: w.tol, seed: w.seed, blockSize: b });
    return { blockSize: b, products: r.products, converged: r.converged };
  });
  return {
    analysis: {
      exactSigmas: eig.values.slice(0, 16).map((l) => Math.sqrt(Math.max(l, 0))),
      powerProducts: power.products,
      powerConverged: power.converged,
      lanczosProducts: lanczos.products,
      lanczosConverged: lanczos.converged,
      lanczosByBlockSize: byBlock,
    },
    top,
    op,
  };
}

/** How a result compares with the exact top n: sigma errors, |cos| with the exact vectors, residuals recomputed. */
function compareWithExact(r: { singularValues: number[]; vectors: number[][] }, exactSigmas: number[], top: Float64Array[], op: NormalOperator) {
  const s1 = exactSigmas[0] ** 2;
  return {
    maxSigmaRelErr: Math.max(...r.singularValues.map((s, i) => Math.abs(s - exactSigmas[i]) / exactSigmas[i])),
    minAbsCos: Math.min(...r.vectors.map((v, i) => Math.abs(dot(v, top[i])))),
    maxRecomputedRelResidual: Math.max(...r.vectors.map((v, i) => {
      const x = Float64Array.from(v);
      const ax = op.apply(x);
      let r2 = 0;
      for (let k = 0; k < x.length; k++) r2 += (ax[k] - r.singularValues[i] ** 2 * x[k]) ** 2;
      return Math.sqrt(r2) / s1;
    })),
  };
}

// ---------------------------------------------------------------------------------------------
// The bench

export interface WorkloadOptions {
  log?: (s: string) => void;
  write?: boolean;
  torch?: boolean;
  explicit?: boolean;
  /** Cap on the Lanczos run's products (it stops unconverged there). */
  lanczosMaxProducts?: number;
  threads?: number;
  operator?: OperatorName;
}

export async function benchWorkload(opts: WorkloadOptions = {}) {
  const log = opts.log ?? ((s: string) => console.log(s));
  const machine = machineInfo();
  log(`workload (Qwen3-0.6B shape, 32 tokens, S=6 T=20 K=4, top 8): ${machineLine(machine)}`);
  const cacheDir = benchCacheDir();
  mkdirSync(cacheDir, { recursive: true });
  const model = ensureBenchCheckpoint(undefined, log);
  const w: Workload = {
    model,
    tokens: workloadTokens(),
    sourceLayer: 6,
    targetLayer: 20,
    positions: 4,
    numVectors: 8,
    seedIters: 3,
    tol: DEFAULT_RESIDUAL_TOL,
    seed: 0,
    threads: opts.threads ?? machine.cores,
    operator: opts.operator ?? DEFAULT_OPERATOR,
  };
  // One start block for (a) and (b), so the two runs of the same algorithm can be compared entry by entry.
  const initFile = join(cacheDir, "workload-start-block.json");
  writeFileSync(initFile, JSON.stringify(randomBlock(1024, w.numVectors, w.seed).map((v) => Array.from(v))));

  let torch: Spawned<TorchReport> | { skipped: string } = { skipped: "--no-torch" };
  if (opts.torch !== false) {
    if (!existsSync(PYTHON)) torch = { skipped: `${PYTHON} not found` };
    else {
      log(`(a) PyTorch, the seed's procedure (${w.seedIters} iterations + Rayleigh-Ritz, ${w.threads} threads) ...`);
      try {
        torch = runTorch(w, initFile);
      } catch (e) {
        torch = { skipped: (e as Error).message };
      }
    }
  }
  log(`(b) jacsteer, block power iteration, ${w.seedIters} iterations + Rayleigh-Ritz ...`);
  const power = spawnChild<RunReport>({ kind: "power", workload: w, initFile }, cacheDir, 900);
  log(`(c) jacsteer, block Lanczos to residual <= ${w.tol} sigma_1^2 ...`);
  const lanczos = spawnChild<RunReport>({ kind: "lanczos", workload: w, maxProducts: opts.lanczosMaxProducts ?? 400 }, cacheDir, 900);

  let explicit: (ExplicitAnalysis & { cached: boolean; formSeconds?: number; checks: Record<string, ReturnType<typeof compareWithExact>> }) | { skipped: string } = { skipped: "--no-explicit" };
  if (opts.explicit !== false) {
    const key = createHash("sha256")
      .update(JSON.stringify([readFileSync(join(model, "config.json"), "utf8"), BENCH_CHECKPOINT_SEED, w.tokens, w.sourceLayer, w.targetLayer, w.positions]))
      .digest("hex")
      .slice(0, 16);
    const file = join(cacheDir, `workload-jtj-${key}.f64`);
    let formSeconds: number | undefined;
    const cached = existsSync(file);
    if (!cached) {
      log(`(d) forming J^T J explicitly (${1024} forward-mode columns; cached in ${file}) ...`);
      formSeconds = spawnChild<{ seconds: number }>({ kind: "explicit", workload: w, outFile: file }, cacheDir, 1800).wallSeconds;
    }
    const bytes = readFileSync(file);
    const A = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    log(`(d) product counts on the explicit J^T J ...`);
    const { analysis, top, op } = analyseExplicit(A, w, log);
    const checks: Record<string, ReturnType<typeof compareWithExact>> = {
      jacsteer_power: compareWithExact(power.report, analysis.exactSigmas, top, op),
      jacsteer_lanczos: compareWithExact(lanczos.report, analysis.exactSigmas, top, op),
    };
    if ("report" in torch) checks.torch_power = compareWithExact({ singularValues: torch.report.singular_values, vectors: torch.report.vectors }, analysis.exactSigmas, top, op);
    explicit = { ...analysis, cached, formSeconds, checks };
  }

  const t = "report" in torch ? torch : null;
  const e = "powerProducts" in explicit ? explicit : null;
  // The same algorithm from the same start block: how far apart the two implementations' answers are.
  const sameAlgorithmSigmaDiff = t ? Math.max(...t.report.singular_values.map((s, i) => Math.abs(s - power.report.singularValues[i]) / s)) : null;
  const ratios = {
    sameAlgorithmWallTorchOverJacsteer: t ? t.wallSeconds / power.wallSeconds : null,
    secondsPerProductTorchOverJacsteer: t ? t.report.seconds_per_product / power.report.secondsPerProduct : null,
    productsPowerOverLanczosToTol: e ? e.powerProducts / e.lanczosProducts : null,
    /** The seed's procedure to a converged top 8 is projected: load + power products x its seconds per product. */
    projectedTorchToTolOverJacsteerLanczos: t && e ? (t.report.load_seconds + e.powerProducts * t.report.seconds_per_product) / lanczos.wallSeconds : null,
  };
  const result = { bench: "workload", machine, workload: { ...w, model: "bench/.cache/qwen3-0.6b-shaped-bf16" }, torch, jacsteerPower: power, jacsteerLanczos: lanczos, explicit, sameAlgorithmSigmaDiff, ratios };
  for (const r of [power, lanczos]) (r.report as Partial<RunReport>).vectors = undefined;
  if (t) (t.report as Partial<TorchReport>).vectors = undefined;
  log(summaryLines(result).join("\n"));
  if (opts.write !== false) writeResults(result);
  return result;
}

type WorkloadResult = {
  machine: MachineInfo;
  workload: Workload;
  torch: Spawned<TorchReport> | { skipped: string };
  jacsteerPower: Spawned<RunReport>;
  jacsteerLanczos: Spawned<RunReport>;
  explicit: (ExplicitAnalysis & { cached: boolean; formSeconds?: number; checks: Record<string, ReturnType<typeof compareWithExact>> }) | { skipped: string };
  sameAlgorithmSigmaDiff: number | null;
  ratios: Record<string, number | null>;
};

const fmt = (x: number | null | undefined, digits = 2) => (x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits));
const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;

function summaryLines(r: WorkloadResult): string[] {
  const t = "report" in r.torch ? r.torch : null;
  const e = "powerProducts" in r.explicit ? r.explicit : null;
  const p = r.jacsteerPower, l = r.jacsteerLanczos;
  const lines = [
    `(a) PyTorch seed procedure: ${t ? `${t.report.products} products, ${fmt(t.report.seconds_per_product, 3)} s/product, whole process ${fmt(t.wallSeconds, 1)} s, peak RSS ${gb(t.report.peak_rss_bytes)}, ${t.report.threads} threads, BLAS ${t.report.blas.map((b) => b.split("/").at(-1)).join(" ")}` : `skipped (${(r.torch as { skipped: string }).skipped})`}`,
    `(b) jacsteer block power:    ${p.report.products} products, ${fmt(p.report.secondsPerProduct, 3)} s/product, whole process ${fmt(p.wallSeconds, 1)} s, peak RSS ${gb(p.report.peakRssBytes)}, ${p.report.threads} thread(s)`,
    `(c) jacsteer block Lanczos:  ${l.report.products} products to max residual ${Math.max(...l.report.relativeResiduals).toExponential(2)} sigma_1^2 (${l.report.converged ? "converged" : "NOT converged"}), ${fmt(l.report.secondsPerProduct, 3)} s/product, whole process ${fmt(l.wallSeconds, 1)} s, peak RSS ${gb(l.report.peakRssBytes)}`,
  ];
  if (e) {
    lines.push(`(d) to residual <= ${r.workload.tol} on the explicit J^T J: block power ${e.powerProducts} products${e.powerConverged ? "" : " (not converged)"}, block Lanczos ${e.lanczosProducts}; Lanczos by block size ${e.lanczosByBlockSize.map((x) => `${x.blockSize}:${x.products}`).join(" ")}`);
    lines.push(`    exact sigmas ${e.exactSigmas.slice(0, 10).map((s) => s.toFixed(4)).join(" ")}`);
    for (const [k, c] of Object.entries(e.checks)) lines.push(`    ${k}: max sigma rel err ${c.maxSigmaRelErr.toExponential(2)}, min |cos| ${c.minAbsCos.toFixed(5)}, max recomputed residual ${c.maxRecomputedRelResidual.toExponential(2)} sigma_1^2`);
  }
  lines.push(
    `ratios: same algorithm whole process PyTorch/jacsteer ${fmt(r.ratios.sameAlgorithmWallTorchOverJacsteer)}x; s/product ${fmt(r.ratios.secondsPerProductTorchOverJacsteer)}x; ` +
      `products power/Lanczos to ${r.workload.tol} ${fmt(r.ratios.productsPowerOverLanczosToTol, 1)}x; time to converged top 8, PyTorch seed (projected)/jacsteer Lanczos ${fmt(r.ratios.projectedTorchToTolOverJacsteerLanczos, 1)}x`,
  );
  return lines;
}

function writeResults(r: WorkloadResult): void {
  const dir = join(packageRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  // The default operator's results are the committed ones; another operator's go beside them.
  const name = r.workload.operator === DEFAULT_OPERATOR ? "workload" : `workload-${r.workload.operator}`;
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(r, null, 2) + "\n");
  const t = "report" in r.torch ? r.torch : null;
  const e = "powerProducts" in r.explicit ? r.explicit : null;
  const p = r.jacsteerPower, l = r.jacsteerLanczos;
  const maxRel = (xs: number[]) => Math.max(...xs).toExponential(2);
  const table = markdownTable(
    ["", "(a) PyTorch, seed's procedure", "(b) jacsteer, same algorithm", "(c) jacsteer, default solver"],
    [
      ["algorithm", `block power, ${r.workload.seedIters} iterations + Rayleigh-Ritz`, `block power, ${r.workload.seedIters} iterations + Rayleigh-Ritz`, `block Lanczos to residual <= ${r.workload.tol} sigma_1^2`],
      ["J^T J v", "double VJP, forward re-run per product", p.report.description, l.report.description],
      ["threads", t ? String(t.report.threads) : "–", String(p.report.threads), String(l.report.threads)],
      ["products", t ? String(t.report.products) : "–", String(p.report.products), String(l.report.products)],
      ["seconds per product", t ? fmt(t.report.seconds_per_product, 3) : "–", fmt(p.report.secondsPerProduct, 3), fmt(l.report.secondsPerProduct, 3)],
      ["setup s (load; jacsteer: + forward at sv0)", t ? fmt(t.report.load_seconds, 1) : "–", fmt(p.report.setupSeconds, 1), fmt(l.report.setupSeconds, 1)],
      ["whole process, wall s", t ? fmt(t.wallSeconds, 1) : "–", fmt(p.wallSeconds, 1), fmt(l.wallSeconds, 1)],
      ["peak RSS", t ? gb(t.report.peak_rss_bytes) : "–", gb(p.report.peakRssBytes), gb(l.report.peakRssBytes)],
      ["max residual / sigma_1^2", t ? maxRel(t.report.relative_residuals) : "–", maxRel(p.report.relativeResiduals), maxRel(l.report.relativeResiduals)],
      ["converged (<= tol)", t ? String(Math.max(...t.report.relative_residuals) <= r.workload.tol) : "–", String(Math.max(...p.report.relativeResiduals) <= r.workload.tol), String(l.report.converged)],
      ["load average before", t ? fmt(t.loadBefore) : "–", fmt(p.loadBefore), fmt(l.loadBefore)],
    ],
  );
  const md = [
    "# The issue-5 workload, jacsteer beside the seed's PyTorch procedure",
    "",
    `Machine: ${machineLine(r.machine)}.`,
    t ? `PyTorch: ${t.report.torch}, ${t.report.threads} threads, BLAS: ${t.report.blas.join(", ") || "not identified"}.` : `PyTorch: skipped (${(r.torch as { skipped: string }).skipped}).`,
    "",
    "Workload: Qwen3-0.6B-shaped BF16 checkpoint with random weights (bench/make-checkpoint.ts; computed in float32),",
    `one 32-token prompt, S = ${r.workload.sourceLayer}, T = ${r.workload.targetLayer}, K = ${r.workload.positions}, top ${r.workload.numVectors}. (a) and (b) start from the same block.`,
    `jacsteer's products: the \`${r.workload.operator}\` operator (bench/workload.ts OPERATORS; DEFAULT_OPERATOR is \`${DEFAULT_OPERATOR}\`).`,
    "Whole-process times are spawn to exit, measured by the bench; seconds per product are measured inside each process.",
    "Residuals are ||J^T J v - sigma^2 v|| / sigma_1^2 (src/solvers/block-lanczos.ts explains the certificate).",
    "Regenerate with `npm run bench -- workload`.",
    "",
    table,
    "",
  ];
  if (e) {
    md.push(
      `## Products to residual <= ${r.workload.tol} (on this workload's J^T J, formed explicitly)`,
      "",
      "Block power iteration needs too many products to run to this tolerance on the model operator in a bench, so the",
      "counts are taken on the workload's own J^T J, formed once column by column with forward-mode products (cached",
      "in bench/.cache/) and applied in float64; the same start block (seed) as (c).",
      "",
      markdownTable(
        ["solver", "products", "converged"],
        [
          ["block power iteration (the seed's algorithm, run to the tolerance)", String(e.powerProducts), String(e.powerConverged)],
          ["block Lanczos, default (block size 8)", String(e.lanczosProducts), String(e.lanczosConverged)],
          ...e.lanczosByBlockSize.map((x) => [`block Lanczos, block size ${x.blockSize}`, String(x.products), String(x.converged)]),
        ],
      ),
      "",
      `Exact top singular values: ${e.exactSigmas.slice(0, 12).map((s) => s.toFixed(4)).join(", ")}.`,
      "",
      markdownTable(
        ["result", "max sigma rel. error", "min abs(cos) with the exact vectors", "max residual recomputed / exact sigma_1^2"],
        Object.entries(e.checks).map(([k, c]) => [k, c.maxSigmaRelErr.toExponential(2), c.minAbsCos.toFixed(5), c.maxRecomputedRelResidual.toExponential(2)]),
      ),
      "",
    );
  }
  md.push(
    "## Ratios",
    "",
    markdownTable(
      ["ratio", "value", "goal"],
      [
        ["same algorithm, whole process: PyTorch / jacsteer", `${fmt(r.ratios.sameAlgorithmWallTorchOverJacsteer)}x`, ">= 3x on 2 threads"],
        ["seconds per J^T J v product: PyTorch / jacsteer", `${fmt(r.ratios.secondsPerProductTorchOverJacsteer)}x`, ""],
        [`products to residual <= ${r.workload.tol}: block power / block Lanczos`, `${fmt(r.ratios.productsPowerOverLanczosToTol, 1)}x`, ">= 3x"],
        ["time to a converged top 8: PyTorch seed procedure (projected: load + power products x its s/product) / jacsteer Lanczos (measured)", `${fmt(r.ratios.projectedTorchToTolOverJacsteerLanczos, 1)}x`, ""],
      ],
    ),
    "",
    `Same algorithm, same start: largest relative difference between (a)'s and (b)'s singular values ${r.sameAlgorithmSigmaDiff === null ? "–" : r.sameAlgorithmSigmaDiff.toExponential(2)}.`,
    "",
  );
  writeFileSync(join(dir, `${name}.md`), md.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Entry point when run on its own (and in the child processes)

function flagValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined) throw new Error(`${name} needs a value`);
  if (name === "--operator" && !(v in OPERATORS)) throw new Error(`--operator ${v}: expected one of ${Object.keys(OPERATORS).join(", ")}`);
  return v;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { enableRelaxedSimd } = await import("../src/node/relaxed-simd.js");
  enableRelaxedSimd();
  const args = process.argv.slice(2);
  const main = args[0] === "--child"
    ? runChild(JSON.parse(readFileSync(args[1]!, "utf8")) as ChildJob)
    : benchWorkload({
        torch: !args.includes("--no-torch"),
        explicit: !args.includes("--no-explicit"),
        operator: flagValue(args, "--operator") as OperatorName | undefined,
        threads: flagValue(args, "--threads") === undefined ? undefined : Number(flagValue(args, "--threads")),
      }).then(() => undefined);
  main.catch((e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  });
}
