// Any Qwen3 size on this machine: `jacsteer power-iter` (block Lanczos, streamed or resident weights
// as it chooses) on BF16 checkpoints of Qwen3's published shapes with random weights
// (bench/make-checkpoint.ts, in bench/.cache/), a 48-token prompt, K 2, top 12, --tol 1e-3, 2 threads.
// Each run is a separate process timed from spawn to exit under /usr/bin/time -v (wall time, peak RSS
// of the process; the page cache is not counted). Beside each run:
//   - the two-thread GEMM rate measured in the same bench run (the engine's own product: packed f32
//     panels, M = 12 vectors x 48 tokens rows, the shape's gate and down projections), and the run's
//     whole-run efficiency: the flops of its products (the matrix products the engine performs for
//     them, counted from the shapes) divided by the wall time, as a share of that rate;
//   - on the 1.7B shape (whose f32 copy fits in RAM for PyTorch), the seed's procedure in PyTorch
//     (bench/torch_seed.py: double VJP, forward re-run per product, 3 block iterations + Rayleigh-Ritz)
//     and jacsteer's block power iteration for the same number of products, ratios printed.
// Results merge into bench/results/scale.json (one entry per shape and run kind, newest kept) and
// bench/results/scale.md is rewritten from it, so shapes can be run one at a time.
//
//   - on the 0.6B shape, bench/results/workload.md's workload with this build and, with --baseline DIR,
//     with the build in DIR (a checkout of an earlier commit, built), in the same run.
//
//   node --experimental-wasm-relaxed-simd dist/bench/scale.js [--shapes 0.6b,1.7b,8b,14b] [--baseline DIR] [--no-torch] [--threads 2] [--block-size B]
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { enableRelaxedSimd } from "../src/node/relaxed-simd.js";
import { packageRoot } from "../src/node/runtime.js";
import { machineInfo, machineLine, markdownTable } from "./harness.js";
import { ensureShapeCheckpoint, QWEN3_SHAPES } from "./make-checkpoint.js";
import { workloadTokens } from "./workload.js";

/** The research line's layer pairs per shape (issue 9). */
export const SITES: Record<string, { S: number; T: number }> = {
  "0.6b": { S: 6, T: 20 },
  "1.7b": { S: 6, T: 22 },
  "8b": { S: 13, T: 21 },
  "14b": { S: 10, T: 32 },
};
const TOKENS = 48, K = 2, N = 12, TOL = 1e-3;

interface Shape {
  d: number;
  I: number;
  q: number;
  kv: number;
}

function shapeOf(name: string): Shape {
  const s = QWEN3_SHAPES[name]!.shape;
  const hd = s.head_dim ?? s.hidden_size / s.num_attention_heads;
  return { d: s.hidden_size, I: s.intermediate_size, q: s.num_attention_heads * hd, kv: s.num_key_value_heads * hd };
}

/**
 * Flops of the matrix products of one J^T J v product (one vector) as the engine performs them: layers
 * S+1..T-1 whole on P rows, both ways; the last layer's q/k/v on all P rows and its o_proj and MLP on
 * the K target rows only (decoder-layer.ts CompactRows).
 */
export function productFlops(sh: Shape, L: number, P: number, Kt: number): number {
  const qkv = sh.d * (sh.q + 2 * sh.kv), rest = sh.q * sh.d + 3 * sh.d * sh.I;
  const oneWay = (L - 1) * 2 * P * (qkv + rest) + 2 * P * qkv + 2 * Kt * rest;
  return 2 * oneWay;
}

/** Two-thread GEMM GFLOP/s of the engine's packed product at M rows on the shape's gate and down projections. */
async function gemmRate(sh: Shape, M: number, threads: number): Promise<number> {
  const { createNodeRuntime } = await import("../src/node/runtime.js");
  const { createParallelGemm } = await import("../src/node/thread-pool.js");
  const { packedFloats } = await import("../src/kernels/matmul.js");
  const rt = await createNodeRuntime();
  const gemm = await createParallelGemm(rt, threads);
  let flops = 0, ms = 0;
  try {
    for (const [n, k] of [[sh.I, sh.d], [sh.d, sh.I]] as const) {
      const a = rt.heap.allocF32(M * k), c = rt.heap.allocF32(M * n);
      rt.heap.f32(a, M * k).fill(0.01);
      const packed = { ptr: rt.heap.allocF32(packedFloats(n, k)), n, k };
      rt.heap.f32(packed.ptr, packedFloats(n, k)).fill(0.02);
      const job = [{ a, m: M, packed, c }];
      await gemm.run(job); // warm
      const t0 = performance.now();
      for (let i = 0; i < 5; i++) await gemm.run(job);
      ms += performance.now() - t0;
      flops += 5 * 2 * M * n * k;
    }
  } finally {
    await gemm.close();
  }
  return flops / (ms * 1e6);
}

interface TimedRun {
  stderr: string;
  wallSeconds: number;
  peakRssBytes: number;
  /** CPU time over wall time, in percent (200 = two cores busy the whole run): less means waiting or a busy machine. */
  cpuPercent: number;
  exitCode: number | null;
  stdout: string;
}

/** Run a command under /usr/bin/time -v: wall time from spawn to exit and the process's peak RSS. */
function timed(cmd: string, args: string[], timeoutSeconds: number): TimedRun {
  const t0 = performance.now();
  const r = spawnSync("/usr/bin/time", ["-v", cmd, ...args], { encoding: "utf8", maxBuffer: 256 << 20, timeout: timeoutSeconds * 1000, stdio: ["ignore", "pipe", "pipe"] });
  const wallSeconds = (performance.now() - t0) / 1000;
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr ?? "");
  const cpu = /Percent of CPU this job got: (\d+)%/.exec(r.stderr ?? "");
  process.stderr.write((r.stderr ?? "").split("\n").filter((l) => !/^\s+\S.*: /.test(l) || /Maximum resident|Elapsed/.test(l)).join("\n") + "\n");
  return { stderr: r.stderr ?? "", wallSeconds, peakRssBytes: rss ? Number(rss[1]) * 1024 : NaN, cpuPercent: cpu ? Number(cpu[1]) : NaN, exitCode: r.status, stdout: r.stdout ?? "" };
}

interface Entry {
  shape: string;
  /** lanczos, power, torch; on the 0.6B workload: workload (this build) and workload-baseline (--baseline DIR's build). */
  kind: string;
  machine: string;
  S: number;
  T: number;
  wallSeconds: number;
  peakRssBytes: number;
  cpuPercent: number;
  /** 1-minute load average just before the run (other work on the machine skews it). */
  loadBefore: number;
  products: number;
  converged?: boolean;
  maxRelativeResidual?: number;
  secondsPerProduct?: number;
  productGflop: number;
  gemmRate: number;
  efficiency?: number;
  weights?: Record<string, unknown>;
  /** Vectors per product (block Lanczos). */
  blockSize?: number;
  note?: string;
}

const RESULTS = () => join(packageRoot(), "bench", "results");

function jacsteerRun(shape: string, dir: string, method: "lanczos" | "power", threads: number, rate: number, machine: string, maxIters?: number, blockSize?: number): Entry {
  const { S, T } = SITES[shape]!;
  const args = [
    "--experimental-wasm-relaxed-simd", join(packageRoot(), "bin", "jacsteer.js"), "power-iter", "--model", dir,
    "--tokens", workloadTokens(TOKENS).join(","), "--source-layer", String(S), "--target-layer", String(T),
    "--positions", String(K), "--num-vectors", String(N), "--tol", String(TOL), "--threads", String(threads), "--method", method, "--json",
    ...(maxIters ? ["--max-iters", String(maxIters)] : []),
    ...(blockSize ? ["--block-size", String(blockSize)] : []),
  ];
  process.stderr.write(`bench: ${shape} ${method}: jacsteer ${args.slice(2, 5).join(" ")} ... --source-layer ${S} --target-layer ${T}\n`);
  const loadBefore = loadavg()[0]!;
  const r = timed(process.execPath, args, 4 * 3600);
  if (r.exitCode !== 0) throw new Error(`jacsteer exited ${r.exitCode} on the ${shape} shape`);
  const j = JSON.parse(r.stdout);
  const perProduct = productFlops(shapeOf(shape), T - S, TOKENS, K) / 1e9;
  const useful = perProduct * j.products;
  return {
    shape, kind: blockSize ? `${method}-block${blockSize}` : method, machine, S, T,
    wallSeconds: r.wallSeconds, peakRssBytes: r.peakRssBytes, cpuPercent: r.cpuPercent, loadBefore, products: j.products, converged: j.converged,
    maxRelativeResidual: Math.max(...j.relative_residuals),
    productGflop: perProduct, gemmRate: rate, efficiency: useful / r.wallSeconds / rate, weights: j.weights, blockSize: j.block_size,
  };
}

function torchRun(shape: string, dir: string, threads: number, rate: number, machine: string): Entry | null {
  const { S, T } = SITES[shape]!;
  if (spawnSync("/usr/bin/python3", ["-c", "import torch"]).status !== 0) {
    process.stderr.write("bench: SKIPPED the PyTorch seed procedure: /usr/bin/python3 has no torch (apt-get install -y python3-torch)\n");
    return null;
  }
  const args = [join(packageRoot(), "bench", "torch_seed.py"), "--model", dir, "--tokens", workloadTokens(TOKENS).join(","), "--source-layer", String(S), "--target-layer", String(T), "--positions", String(K), "--num-vectors", String(N), "--iters", "3", "--threads", String(threads)];
  process.stderr.write(`bench: ${shape}: the seed's procedure in PyTorch (3 block iterations + Rayleigh-Ritz) ...\n`);
  const loadBefore = loadavg()[0]!;
  const r = timed("/usr/bin/python3", args, 3 * 3600);
  if (r.exitCode !== 0) throw new Error(`torch_seed.py exited ${r.exitCode}`);
  const j = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  return {
    shape, kind: "torch", machine, S, T, wallSeconds: r.wallSeconds, peakRssBytes: r.peakRssBytes, cpuPercent: r.cpuPercent, loadBefore, products: j.products,
    secondsPerProduct: j.seconds_per_product, productGflop: productFlops(shapeOf(shape), T - S, TOKENS, K) / 1e9, gemmRate: rate,
    note: `torch ${j.torch ?? ""}, BLAS ${(j.blas ?? []).map((b: string) => b.split("/").at(-1)).join(" ")}`,
  };
}

/**
 * The 0.6B workload of bench/results/workload.md (32 tokens, S 6, T 20, K 4, top 8, block power 3
 * iterations + Rayleigh-Ritz = 32 products) with this build and with the build in `baselineDir`
 * (e.g. a checkout of the commit before streamed weights), alternating A B A B; the faster of each
 * pair is kept. Setup is read from each run's stderr ("layers 0..S run once (x s)", "... at sv0 (y s)").
 */
function workload06(dir: string, baselineDir: string | undefined, threads: number, rate: number, machine: string): Entry[] {
  const builds: Array<[string, string]> = [["workload", packageRoot()]];
  if (baselineDir) builds.push(["workload-baseline", baselineDir]);
  const best = new Map<string, Entry>();
  for (let round = 0; round < 2; round++) {
    for (const [kind, root] of builds) {
      const args = ["--experimental-wasm-relaxed-simd", join(root, "bin", "jacsteer.js"), "power-iter", "--model", dir, "--tokens", workloadTokens(32).join(","),
        "--source-layer", "6", "--target-layer", "20", "--positions", "4", "--num-vectors", "8", "--method", "power", "--max-iters", "3", "--threads", String(threads), "--json"];
      process.stderr.write(`bench: 0.6b workload with ${root}\n`);
      const loadBefore = loadavg()[0]!;
      const r = timed(process.execPath, args, 3600);
      if (r.exitCode !== 0) throw new Error(`${root}: jacsteer exited ${r.exitCode}`);
      const j = JSON.parse(r.stdout);
      const setup = [...r.stderr.matchAll(/(?:run once for .*|at sv0) \((\d+\.\d) s\)/g)].reduce((a, m) => a + Number(m[1]), 0);
      const flops = productFlops(shapeOf("0.6b"), 14, 32, 4) / 1e9;
      const e: Entry = {
        shape: "0.6b", kind, machine, S: 6, T: 20, wallSeconds: r.wallSeconds, peakRssBytes: r.peakRssBytes, cpuPercent: r.cpuPercent, loadBefore,
        products: j.products, converged: j.converged, maxRelativeResidual: Math.max(...j.relative_residuals),
        secondsPerProduct: (j.seconds - setup) / j.products, productGflop: flops, gemmRate: rate, efficiency: (flops * j.products) / r.wallSeconds / rate,
        weights: { ...(j.weights ?? {}), setup_seconds: setup }, note: kind === "workload-baseline" ? `baseline build: ${root}` : undefined,
      };
      const prev = best.get(kind);
      if (!prev || e.wallSeconds < prev.wallSeconds) best.set(kind, e);
    }
  }
  return [...best.values()];
}

function writeResults(entries: Entry[]): void {
  const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
  const min = (s: number) => (s >= 120 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(1)} s`);
  const order = ["0.6b", "1.7b", "8b", "14b"];
  const sorted = [...entries].sort((a, b) => order.indexOf(a.shape) - order.indexOf(b.shape) || a.kind.localeCompare(b.kind));
  const rows = sorted.map((e) => {
    const w = e.weights as { mode?: string; read_wait_seconds?: number; load_seconds?: { prefix: number; suffix: number } } | undefined;
    return [
      `Qwen3-${e.shape.toUpperCase()} (S ${e.S}, T ${e.T})`,
      (({ torch: "PyTorch, seed's procedure", power: "jacsteer block power", lanczos: "jacsteer block Lanczos", "lanczos-block12": "jacsteer block Lanczos, previous default",
        "lanczos-block2": "jacsteer block Lanczos, --block-size 2", workload: "workload: block power, this build", "workload-baseline": "workload: block power, baseline build" } as Record<string, string>)[e.kind] ?? e.kind) +
        (e.blockSize !== undefined && e.kind.startsWith("lanczos") ? ` (blocks of ${e.blockSize})` : ""),
      w?.mode ?? "–",
      String(e.products),
      e.converged === undefined ? "–" : e.converged ? `yes (${e.maxRelativeResidual!.toExponential(1)})` : `no (${e.maxRelativeResidual!.toExponential(1)})`,
      min(e.wallSeconds),
      e.secondsPerProduct !== undefined ? e.secondsPerProduct.toFixed(2) : "–",
      gb(e.peakRssBytes),
      w?.load_seconds ? `${(w.load_seconds.prefix + w.load_seconds.suffix).toFixed(1)} s` : (w as { setup_seconds?: number } | undefined)?.setup_seconds !== undefined ? `${(w as { setup_seconds: number }).setup_seconds.toFixed(1)} s` : "–",
      w?.read_wait_seconds !== undefined ? `${w.read_wait_seconds.toFixed(1)} s` : "–",
      `${e.cpuPercent}% (${e.loadBefore.toFixed(1)})`,
      `${e.gemmRate.toFixed(1)}`,
      e.efficiency !== undefined ? `${(100 * e.efficiency).toFixed(0)}%` : "–",
    ];
  });
  const machines = [...new Set(sorted.map((e) => `- ${e.shape} ${e.kind}: ${e.machine}`))];
  const md = [
    "# Any Qwen3 size: power-iter on Qwen3's published shapes",
    "",
    `BF16 checkpoints with random weights (bench/make-checkpoint.ts), a ${TOKENS}-token prompt, K ${K}, top ${N}, --tol ${TOL}, 2 threads.`,
    "Wall time is spawn to exit; peak RSS is the process's (/usr/bin/time -v; the page cache is not counted).",
    "Efficiency: the flops of the run's J^T J v products (the matrix products the engine performs, counted from the shapes)",
    "divided by the wall time, as a share of the two-thread GEMM rate measured at the start of the same bench run.",
    "Setup: layers 0..S and the forward of S+1..T at sv0. Read wait: time the products waited for streamed reads.",
    "CPU: the process's CPU time over its wall time (200% = both cores the whole run), and the load average just before it.",
    "Regenerate with `node --experimental-wasm-relaxed-simd dist/bench/scale.js --shapes 1.7b,8b,14b` (after `npm run build`).",
    "The other commands (caa, eval-ab, generate, melbo) on the same checkpoints, with time, peak RSS and the memory bound per command:",
    "scale-commands.md (bench/scale-commands.ts).",
    "",
    markdownTable(["model", "run", "weights", "products", "converged (max residual / sigma_1^2)", "wall", "s / product", "peak RSS", "setup", "read wait", "CPU (load before)", "GEMM GFLOP/s", "efficiency"], rows),
    "",
    "Machines (one line per run):",
    ...machines,
    "",
    ...sorted.filter((e) => e.note).map((e) => `${e.shape} ${e.kind}: ${e.note}`),
    "",
  ].join("\n");
  writeFileSync(join(RESULTS(), "scale.json"), JSON.stringify(entries, null, 2) + "\n");
  writeFileSync(join(RESULTS(), "scale.md"), md);
  process.stderr.write(md);
}

export async function benchScale(argv: string[] = process.argv.slice(2)): Promise<void> {
  const flag = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const shapes = (flag("--shapes") ?? "1.7b,8b,14b").split(",");
  const baseline = flag("--baseline");
  const threads = Number(flag("--threads") ?? 2);
  // A fixed Lanczos block size instead of power-iter's automatic one (kept as its own row).
  const blockSize = flag("--block-size") ? Number(flag("--block-size")) : undefined;
  const methods = (flag("--methods") ?? "lanczos").split(",") as Array<"lanczos" | "power">;
  const file = join(RESULTS(), "scale.json");
  let entries: Entry[] = existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : [];
  const keep = (e: Entry) => (entries = [...entries.filter((x) => !(x.shape === e.shape && x.kind === e.kind)), e]);
  for (const shape of shapes) {
    if (!SITES[shape]) throw new Error(`unknown shape ${shape}`);
    const dir = ensureShapeCheckpoint(shape);
    if (!dir) continue;
    const machine = machineLine(machineInfo());
    const rate = await gemmRate(shapeOf(shape), N * TOKENS, threads);
    process.stderr.write(`bench: ${shape}: two-thread GEMM rate ${rate.toFixed(1)} GFLOP/s at M = ${N * TOKENS}\n`);
    if (shape === "0.6b") {
      for (const e of workload06(dir, baseline, threads, rate, machine)) keep(e);
      writeResults(entries);
      continue;
    }
    for (const m of methods) keep(jacsteerRun(shape, dir, m, threads, rate, machine, undefined, m === "lanczos" ? blockSize : undefined));
    if (shape === "1.7b" && !argv.includes("--no-torch")) {
      const t = torchRun(shape, dir, threads, rate, machine);
      if (t) {
        keep(t);
        // The same algorithm on jacsteer's engine: block power, the same number of block applications.
        keep(jacsteerRun(shape, dir, "power", threads, rate, machine, 3));
      }
    }
    writeResults(entries);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  enableRelaxedSimd();
  benchScale().catch((e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  });
}
