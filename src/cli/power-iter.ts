// `jacsteer power-iter`: top right singular vectors of the steering Jacobian (CONTRACT.md sections 1-3).
import { intFlag, numberFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, defaultLayers, defaultModelDir, log, readVectorArg, readVectorsArg, resolvePrompts, warn, warnings, PROMPT_OPTIONS, promptFlags, SITE_OPTIONS } from "./session.js";
import { parseVectorRef, encodeVectorFile } from "../io/vector-file.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { SteeringJacobian, checkSiteLayers, type ProductMethod } from "../jacobian/steering-jacobian.js";
import { describePositions, describePositionWeights, positionsFromFlags } from "../jacobian/positions.js";
import { blockPowerIterationAsync } from "../solvers/block-power.js";
import { blockLanczosAsync } from "../solvers/block-lanczos.js";
import type { BlockOperator, Progress, SolveResult } from "../solvers/common.js";
import { SteeringEngine, autoBlockSize } from "../engine/steering-engine.js";
import { createParallelGemm } from "../node/thread-pool.js";
import { createNodeRuntime } from "../node/runtime.js";
import { openCheckpoint, type Checkpoint } from "../node/checkpoint.js";
import { AutodiffContext } from "../autodiff/tensor.js";
import { loadQwen3Weights } from "../model/weights.js";
import { Qwen3Model } from "../model/qwen3.js";
import type { Runtime } from "../runtime/runtime.js";
import type { Positions } from "../jacobian/positions.js";
import type { VectorSet } from "../io/vector-file.js";
import type { VerifyOptions } from "../verify/verify.js";
import { createHash } from "node:crypto";
import { svBytes } from "../io/run-identity.js";
import { powerIterVectorSet } from "../io/power-iter-file.js";
import { verifyVectorSets } from "../verify/verify.js";
import { emitReport, readVectorSet, verifyOptionsFrom } from "./verify.js";
import { progressLine } from "../solvers/eta.js";
import { LONG_RUN_OPTIONS, LongRun, runIdentity, stateFlags } from "./long-run.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag } from "./weights-flag.js";

export const POWER_ITER_HELP = `jacsteer power-iter: top singular vectors of d(layer-T output at the last K positions)/d(steering vector at layer S)

  --model DIR              checkpoint directory (default: the bundled tiny model)
  --prompt TEXT            a prompt (repeatable); --prompts FILE (one per line, or a .json array); --tokens 1,2,3 (repeatable)
  --chat, --system TEXT    render prompts with the checkpoint's chat template (thinking disabled)
  --source-layer S         layer whose output receives the steering vector (default: scaled from the seed's 6 of 28)
  --target-layer T         layer whose output is the target (default: scaled from the seed's 20 of 28)
  --positions K            last K token positions (default 4)
  --position-list 3,7,-1   explicit positions instead (negative counts from the end, -1 = last token)
  --all-positions          every position of each prompt
  --position-weights W,... one weight per selected position: the target rows are multiplied by them,
                           so J^T J weights each position by its weight squared
  --num-vectors N          how many singular vectors (default 8)
  --method M               how J^T J v is formed and which solver runs:
                             lanczos     block Lanczos (Krylov) on the batched engine (default: fewest products)
                             power       block power iteration on the batched engine
                             jvp         block power iteration, autodiff: forward-mode J v, then one VJP
                             double-vjp  block power iteration, autodiff: the seed's double VJP, verbatim
                           lanczos and power use --threads; jvp and double-vjp are the single-thread reference
  --block-size B           vectors per J^T J product, lanczos only (default auto: the fewest that give the
                           matrix products 96 rows, at least 2 and at most --num-vectors; printed). Smaller
                           blocks need fewer products in all; too few rows make each product slow
  --max-iters I            block applications at most (default 100 for power iteration, unlimited for lanczos)
  --tol E                  lanczos: stop when every ||J^T J v - sigma^2 v|| <= E * sigma_1^2 (default 1e-5);
                           power iteration: when the subspace moves less than E (sine of largest angle; default 1e-5)
  --seed N                 random start (default 0)
  --at FILE[:ROW]          evaluate J at sv0 = A * vector; --at-scale A (default 1)
  --init FILE[:ROW]        initial guess: one row, or all rows of FILE
  --threads N              worker threads (default: all cores; more than the cores is capped, with a line)
  --weights MODE           layers S+1..T for lanczos and power, kept in their stored dtype (BF16 stays BF16):
                             resident  read once and kept (2 bytes per BF16 weight)
                             stream    read from the checkpoint every pass (two layers in memory: any model size)
                             auto      resident when they fit 2 GiB, else stream (default; printed)
  --out FILE.safetensors   write vectors, singular values, residuals and run metadata
  --json                   print a JSON summary on stdout
  --state FILE             save the solver state to FILE after every block product (atomically), so an
                           interrupted run can be continued; refuses to overwrite an existing FILE
  --resume FILE            continue the run saved in FILE (same command and flags; refused with a line
                           naming what differs otherwise), saving to FILE unless --state says elsewhere;
                           the result is bitwise identical to an uninterrupted run
  --verify-against FILE    compare the result with a reference vector file (see \`jacsteer verify --help\`;
                           --eps, --safety, --cluster-sin pass through); exit 1 unless it passes
`;

const OPTIONS: Options = {
  ...PROMPT_OPTIONS,
  ...SITE_OPTIONS,
  "num-vectors": { type: "string" },
  method: { type: "string" },
  "max-iters": { type: "string" },
  "block-size": { type: "string" },
  tol: { type: "string" },
  seed: { type: "string" },
  at: { type: "string" },
  "at-scale": { type: "string" },
  init: { type: "string" },
  threads: { type: "string" },
  weights: { type: "string" },
  out: { type: "string" },
  json: { type: "boolean" },
  "verify-against": { type: "string" },
  eps: { type: "string" },
  safety: { type: "string" },
  "cluster-sin": { type: "string" },
  ...LONG_RUN_OPTIONS,
  help: { type: "boolean", short: "h" },
};

const METHODS = ["lanczos", "power", "jvp", "double-vjp"] as const;
type Method = (typeof METHODS)[number];

export async function powerIter(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(POWER_ITER_HELP);
    return 0;
  }
  const method = ((f.method as string | undefined) ?? "lanczos") as Method;
  if (!METHODS.includes(method)) throw new UsageError(`--method ${method}: expected one of ${METHODS.join(", ")}`);
  const batched = method === "lanczos" || method === "power";
  const weights = weightsFlag(f);
  if (f.weights !== undefined && !batched) throw new UsageError(`--weights applies to --method lanczos and power; the ${method} reference keeps layers 0..T resident`);
  let K = positionsFromFlags(
    { positions: f.positions as string | undefined, positionList: f["position-list"] as string | undefined, positionWeights: f["position-weights"] as string | undefined, allPositions: !!f["all-positions"] },
    4,
  );
  const n = intFlag(f, "num-vectors", 8, 1)!;
  const maxIters = intFlag(f, "max-iters", method === "lanczos" ? undefined : 100, 1);
  const blockSizeFlag = intFlag(f, "block-size", undefined, 1);
  if (blockSizeFlag !== undefined && method !== "lanczos") throw new UsageError(`--block-size applies to --method lanczos; ${method} iterates on all --num-vectors at once`);
  if (blockSizeFlag !== undefined && blockSizeFlag > n) throw new UsageError(`--block-size ${blockSizeFlag}: must not exceed --num-vectors ${n}`);
  const tol = numberFlag(f, "tol", 1e-5)!;
  if (tol < 0) throw new UsageError(`--tol ${tol}: must not be negative`);
  const seed = intFlag(f, "seed", 0, 0)!;
  const threads = threadsFlag(f, log);
  const atScale = numberFlag(f, "at-scale", 1)!;
  if (f["at-scale"] !== undefined && f.at === undefined) throw new UsageError("--at-scale needs --at");
  checkOutPath(f.out as string | undefined);
  const verifyOpts = verifyOptionsFrom(f);
  const reference = f["verify-against"] === undefined ? undefined : readVectorSet(f["verify-against"] as string, "--verify-against");
  const state = stateFlags(f);

  const started = performance.now();
  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  try {
    const L = ckpt.config.numLayers;
    const defaults = defaultLayers(L);
    const S = intFlag(f, "source-layer", defaults.source)!;
    const T = intFlag(f, "target-layer", defaults.target)!;
    if (f["source-layer"] === undefined || f["target-layer"] === undefined) {
      log(`jacsteer: using --source-layer ${S} --target-layer ${T} (defaults for a ${L}-layer model; the seed used 6 and 20 of 28)`);
    }
    checkSiteLayers(L, S, T);
    const d = ckpt.config.hiddenSize;
    if (n > d) throw new UsageError(`--num-vectors ${n} exceeds the hidden size ${d}`);
    const prompts = await resolvePrompts(promptFlags(f), ckpt);
    // The default K = 4 must not make the quick start fail on a short prompt ("Hello" is one Qwen3
    // token): without --positions, K shrinks to the shortest prompt, and a line says so. An explicit
    // --positions longer than a prompt stays an error.
    const shortest = Math.min(...prompts.map((p) => p.length));
    if (typeof K === "number" && f.positions === undefined && shortest < K) {
      log(`jacsteer: the shortest prompt has ${shortest} token(s), fewer than the default K = ${K}: using --positions ${shortest} (give a longer prompt for more target positions)`);
      K = shortest;
    }
    let at: Float32Array | undefined;
    if (f.at !== undefined) {
      const { vector, sourceLayer } = readVectorArg(f.at as string, "--at", d);
      if (sourceLayer !== null && sourceLayer !== S) warn(`--at ${f.at} was computed at source_layer ${sourceLayer} (its file's metadata) but is used as the steering point at layer ${S}`);
      at = vector.map((x) => x * atScale);
    }
    let init: Float64Array[] | undefined;
    if (f.init !== undefined) {
      const ref = parseVectorRef(f.init as string);
      init = ref.row === null ? readVectorsArg(ref.file, "--init").map((v) => Float64Array.from(v)) : [Float64Array.from(readVectorArg(f.init as string, "--init", d).vector)];
      if (init.some((v) => v.length !== d)) throw new UsageError(`--init ${f.init}: vectors have length ${init[0].length}, the model's hidden size is ${d}`);
      init = init.slice(0, n);
    }
    const site = { sourceLayer: S, targetLayer: T, positions: K, at };
    const blockSize = method === "lanczos" ? blockSizeFlag ?? autoBlockSize(n, prompts) : n;
    const usedThreads = batched ? threads : 1;
    log(
      `jacsteer: ${ckpt.name}: ${L} layers, hidden ${d}; S=${S} T=${T} ${typeof K === "number" ? `K=${K}` : `positions ${describePositions(K)}${describePositionWeights(K) ? ` weights ${describePositionWeights(K)}` : ""}`}; ` +
        `${prompts.length} prompt(s) of ${prompts.map((p) => p.length).join(", ")} tokens; method ${method}${method === "lanczos" ? ` (block size ${blockSize}${blockSizeFlag === undefined ? ", auto" : ""})` : ""}; threads ${usedThreads}` +
        (batched ? "" : threads > 1 ? ` (the ${method} reference path is single-threaded)` : ""),
    );

    // The operator A = J^T J on a block of vectors: the batched engine, or the autodiff reference.
    const rt = await createNodeRuntime();
    const identity = runIdentity({ config: ckpt.config, modelName: ckpt.name, prompts, sourceLayer: S, targetLayer: T, positions: K, method, numVectors: n, blockSize, tol, maxIters, seed, init, at, kernels: rt.build });
    const longRun = new LongRun({ ...state, identity, dim: d, method, tol, maxIters, log });
    let engine: SteeringEngine | undefined;
    let op: BlockOperator;
    if (batched) {
      const gemm = await createParallelGemm(rt, threads);
      try {
        engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, site, { gemm, log, weights });
      } catch (e) {
        await gemm.close();
        throw e;
      }
      const e = engine;
      op = { dim: d, applyBlock: (V) => e.normalProducts(V) };
    } else {
      const ctx = new AutodiffContext(rt);
      const advice = `the ${method} reference keeps them resident; use --method lanczos, which streams the weights and runs any model size`;
      const model = ctx.noGrad(() => loadQwen3Weights(ctx, ckpt.config, ckpt.tensors, { layers: T + 1, advice }));
      const J = new SteeringJacobian(new Qwen3Model(ctx, ckpt.config, model), prompts, site);
      op = { dim: d, applyBlock: (V) => V.map((v) => Float64Array.from(J.normalProduct(Float32Array.from(v), method as ProductMethod))) };
    }
    const onProgress = (p: Progress) => longRun.progress(p, progressLine(method, p));
    let result: SolveResult;
    try {
      const resumable = longRun.wrap(op);
      result = await longRun.run(() =>
        method === "lanczos"
          ? blockLanczosAsync(resumable, { numVectors: n, blockSize, tol, seed, init, onProgress, maxIters })
          : blockPowerIterationAsync(resumable, { numVectors: n, maxIters: maxIters!, tol, seed, init, onProgress }),
      );
    } finally {
      await engine?.close();
    }
    const weightStats = engine ? engineWeightStats(engine) : null;
    if (engine?.stream) {
      const st = engine.stream;
      log(`engine: streamed ${st.reads} layer reads (${(st.bytesRead / 1e9).toFixed(1)} GB); the products waited ${st.waitSeconds.toFixed(1)} s for reads`);
    }
    return finish({ f, blockSize, result, ckpt, rt, method, S, T, K, n, seed, tol, maxIters, atScale, at, prompts, started, usedThreads, reference, verifyOpts, weightStats });
  } finally {
    ckpt.close();
  }
}

interface Finish {
  f: Record<string, unknown>;
  blockSize: number;
  result: SolveResult;
  ckpt: Checkpoint;
  rt: Runtime;
  method: Method;
  S: number;
  T: number;
  K: Positions;
  n: number;
  seed: number;
  tol: number;
  maxIters: number | undefined;
  atScale: number;
  at: Float32Array | undefined;
  prompts: number[][];
  started: number;
  usedThreads: number;
  reference: VectorSet | undefined;
  verifyOpts: VerifyOptions;
  weightStats: Record<string, unknown> | null;
}

/** What the batched engine did with its weights, for --json (and the benches). */
function engineWeightStats(e: SteeringEngine): Record<string, unknown> {
  return {
    mode: e.weightPlan.mode,
    resident_bytes: e.weightPlan.residentBytes,
    stream_bytes: e.weightPlan.streamBytes,
    load_seconds: e.loadSeconds,
    layer_reads: e.stream?.reads ?? 0,
    bytes_read: e.stream?.bytesRead ?? 0,
    read_wait_seconds: e.stream?.waitSeconds ?? 0,
  };
}

/** Write the vector file, print the summary, verify against a reference if asked. */
function finish({ f, blockSize, result, ckpt, rt, method, S, T, K, n, seed, tol, maxIters, atScale, at, prompts, started, usedThreads, reference, verifyOpts, weightStats }: Finish): number {
  const seconds = (performance.now() - started) / 1000;

  const atBytes = svBytes(at);
  const vectorSet = powerIterVectorSet({
    result,
    method,
    modelName: ckpt.name,
    modelPath: ckpt.dir,
    config: ckpt.config,
    sourceLayer: S,
    targetLayer: T,
    positions: K,
    seed,
    numVectors: n,
    blockSize,
    prompts,
    chat: !!f.chat,
    tol,
    maxIters,
    threads: usedThreads,
    kernels: rt.build,
    at: f.at === undefined ? undefined : { arg: String(f.at), scale: atScale, sha256: atBytes ? createHash("sha256").update(atBytes).digest("hex") : "" },
    init: f.init === undefined ? undefined : String(f.init),
  });
  const metadata = vectorSet.metadata;
  // The residual certificate relative to sigma_1^2, per vector.
  const relative = result.relativeResiduals;
  if (f.out !== undefined) {
    writeFileAtomic(f.out as string, encodeVectorFile(vectorSet));
    log(`jacsteer: wrote ${f.out}`);
  }
  const verification = reference ? verifyVectorSets({ ...vectorSet, metadata: { ...metadata, format: "jacsteer.vectors.v1" } }, reference, verifyOpts) : undefined;

  if (f.json) {
    const summary = {
      singular_values: result.singularValues,
      residuals: result.residuals,
      relative_residuals: relative,
      iterations: result.iterations,
      products: result.products,
      block_size: blockSize,
      converged: result.converged,
      seconds,
      tokens: prompts,
      method,
      source_layer: S,
      target_layer: T,
      positions: typeof K === "number" ? K : describePositions(K),
      position_weights: describePositionWeights(K) || null,
      model: ckpt.name,
      kernels: rt.build,
      threads: usedThreads,
      peak_wasm_bytes: rt.heap.peakBytes,
      weights: weightStats,
      out: f.out ?? null,
      verify: verification ?? null,
      warnings: warnings(),
    };
    process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
  } else {
    const lines = [`  i  sigma          residual ||J^T J v - sigma^2 v||   / sigma_1^2`];
    result.singularValues.forEach((s, i) => lines.push(`${String(i).padStart(3)}  ${s.toPrecision(8).padEnd(13)}  ${result.residuals[i].toExponential(3).padEnd(27)}  ${relative[i].toExponential(2)}`));
    lines.push(`${result.converged ? "converged" : "NOT converged (raise --max-iters or --tol)"} after ${result.iterations} iterations, ${result.products} J^T J v products, ${seconds.toFixed(2)} s (method ${method}, ${usedThreads} thread${usedThreads > 1 ? "s" : ""})`);
    process.stdout.write(lines.join("\n") + "\n");
  }
  if (verification) {
    if (!f.json) process.stdout.write(`\nverification against ${f["verify-against"]}:\n`);
    const code = f.json ? (verification.verdict === "PASS" ? 0 : 1) : emitReport(verification, false);
    return code;
  }
  return 0;
}
