// powerIter: the top right singular vectors of the steering Jacobian in one call (what
// `jacsteer power-iter` runs; the CLI parses flags, reads files and prints around this).
import { SteeringJacobian, checkSiteLayers, type ProductMethod } from "../jacobian/steering-jacobian.js";
import { describePositions, describePositionWeights, type Positions } from "../jacobian/positions.js";
import { blockPowerIterationAsync } from "../solvers/block-power.js";
import { blockLanczosAsync } from "../solvers/block-lanczos.js";
import { progressLine, solverEta, solverEtaMetric, type Eta } from "../solvers/eta.js";
import type { BlockOperator, Progress, SolveResult } from "../solvers/common.js";
import { SteeringEngine, autoBlockSize, type WeightMode } from "../engine/steering-engine.js";
import { powerIterVectorSet } from "../io/power-iter-file.js";
import { AutodiffContext } from "../autodiff/tensor.js";
import { loadQwen3Weights } from "../model/weights.js";
import { Qwen3Model, InputError } from "../model/qwen3.js";
import { modelConfigKey, svBytes } from "../io/run-identity.js";
import { LazyTokenizer, Reporter, turnEventLoop, siteLayers, sha256Hex, throwIfAborted, tokenizePrompts, withGemm, type CommonOptions, type LongRunHooks, type PromptInput, type PromptStyleOptions, type VectorFileResult } from "./common.js";

export const POWER_ITER_METHODS = ["lanczos", "power", "jvp", "double-vjp"] as const;
export type PowerIterMethod = (typeof POWER_ITER_METHODS)[number];

export interface PowerIterOptions extends CommonOptions, PromptStyleOptions {
  prompts: readonly PromptInput[];
  /** Layer whose output receives the steering vector (default: the seed's 6 of 28, scaled to the model). */
  sourceLayer?: number;
  /** Layer whose output is the target (default: the seed's 20 of 28, scaled). */
  targetLayer?: number;
  /**
   * The last K positions (default 4, shrunk to the shortest prompt with a log line when not given), or
   * an explicit choice (positionsFromFlags / the Positions type).
   */
  positions?: Positions;
  /** Singular vectors (default 8). */
  numVectors?: number;
  /** Default "lanczos" (fewest products); "power", "jvp", "double-vjp" as the CLI's --method. */
  method?: PowerIterMethod;
  /** Block applications at most (default 100 for power iteration, unlimited for lanczos). */
  maxIters?: number;
  /** Vectors per J^T J product, lanczos only (default: autoBlockSize, the fewest that give 192 rows). */
  blockSize?: number;
  /** Convergence tolerance (default 1e-5; see the README). */
  tol?: number;
  /** Random start (default 0). */
  seed?: number;
  /**
   * Evaluate J at sv0 = scale * vector (default: zeros). `sourceLayer`: the layer the vector was
   * computed at (a warning when it is not sourceLayer); `label` names it in messages (default "at"),
   * `ref` in the vector file's metadata (default "(vector)").
   */
  at?: { vector: Float32Array; scale?: number; sourceLayer?: number | null; label?: string; ref?: string };
  /** Initial guess (at most numVectors are used; default random); `label` and `ref` as for `at`. */
  init?: { vectors: readonly (Float32Array | Float64Array)[]; label?: string; ref?: string };
  /** Layers S+1..T resident, streamed, or auto (lanczos and power only). */
  weights?: WeightMode;
  /** Called after every block product (default: a progress line through `log`). */
  onProgress?: (p: PowerIterProgress) => void;
  /** @internal the CLI's state file / resume / signal handling around the solve. */
  solverHooks?: SolverHooks;
}

/** One block product done. */
export interface PowerIterProgress extends Progress {
  /** Time left, estimated as the CLI's progress lines do (src/solvers/eta.ts). */
  eta: Eta;
  /** The ETA as the CLI prints it ("ETA ~3m 5s (from the residual's rate)"). */
  etaText: string;
  /** The CLI's progress line without the ETA. */
  line: string;
}

/** @internal the CLI's hooks (LongRunHooks); `begin` comes before the model is loaded. */
export interface SolverHooks extends LongRunHooks<PowerIterRunInfo> {
  /** After every block product, instead of the default progress line through `log`. */
  progress?(p: PowerIterProgress): void;
}

/** What a run is, resolved (for state files). */
export interface PowerIterRunInfo {
  prompts: number[][];
  sourceLayer: number;
  targetLayer: number;
  positions: Positions;
  method: PowerIterMethod;
  numVectors: number;
  blockSize: number;
  tol: number;
  maxIters: number | undefined;
  seed: number;
  init: Float64Array[] | undefined;
  at: Float32Array | undefined;
  kernels: string;
}

/** What the batched engine did with its weights. */
export interface EngineWeightStats {
  mode: "resident" | "stream";
  resident_bytes: number;
  stream_bytes: number;
  load_seconds: { embedding: number; prefix: number; suffix: number };
  layer_reads: number;
  bytes_read: number;
  read_wait_seconds: number;
}

/** Vectors (unit, descending by singular value, largest-magnitude entry positive), sigmas, residuals, ... */
export interface PowerIterResult extends VectorFileResult, Omit<SolveResult, "vectors"> {
  /** Token ids of every prompt, as run. */
  tokens: number[][];
  sourceLayer: number;
  targetLayer: number;
  positions: Positions;
  method: PowerIterMethod;
  /** Vectors per product (block Lanczos; all of them for power iteration). */
  blockSize: number;
  threads: number;
  peakWasmBytes: number;
  weights: EngineWeightStats | null;
}

export async function powerIter(o: PowerIterOptions): Promise<PowerIterResult> {
  const rep = new Reporter(o);
  const log = rep.log;
  const method = o.method ?? "lanczos";
  if (!POWER_ITER_METHODS.includes(method)) throw new InputError(`--method ${method}: expected one of ${POWER_ITER_METHODS.join(", ")}`);
  const batched = method === "lanczos" || method === "power";
  if (o.weights !== undefined && !batched) throw new InputError(`--weights applies to --method lanczos and power; the ${method} reference keeps layers 0..T resident`);
  const n = o.numVectors ?? 8;
  const maxIters = o.maxIters ?? (method === "lanczos" ? undefined : 100);
  const tol = o.tol ?? 1e-5;
  if (!(tol >= 0)) throw new InputError(`--tol ${tol}: must not be negative`);
  const seed = o.seed ?? 0;
  if (o.blockSize !== undefined) {
    if (method !== "lanczos") throw new InputError(`--block-size applies to --method lanczos; ${method} iterates on all --num-vectors at once`);
    if (!Number.isInteger(o.blockSize) || o.blockSize < 1) throw new InputError(`--block-size ${o.blockSize}: must be a positive integer`);
    if (o.blockSize > n) throw new InputError(`--block-size ${o.blockSize}: must not exceed --num-vectors ${n}`);
  }
  throwIfAborted(o.signal);

  const cfg = o.model.config;
  const L = cfg.numLayers;
  const { S, T } = siteLayers(L, o, log);
  checkSiteLayers(L, S, T);
  const d = cfg.hiddenSize;
  if (n > d) throw new InputError(`--num-vectors ${n} exceeds the hidden size ${d}`);
  const prompts = await tokenizePrompts(o.prompts, o, new LazyTokenizer(o.tokenizer));
  // The default K = 4 must not make the quick start fail on a short prompt ("Hello" is one Qwen3
  // token): without positions, K shrinks to the shortest prompt, and a line says so. An explicit K
  // longer than a prompt stays an error.
  let K: Positions = o.positions ?? 4;
  const shortest = Math.min(...prompts.map((p) => p.length));
  if (o.positions === undefined && shortest < 4) {
    log(`jacsteer: the shortest prompt has ${shortest} token(s), fewer than the default K = 4: using --positions ${shortest} (give a longer prompt for more target positions)`);
    K = shortest;
  }
  let at: Float32Array | undefined;
  if (o.at) {
    const label = o.at.label ?? "at";
    if (o.at.vector.length !== d) throw new InputError(`${label}: vectors have length ${o.at.vector.length}, the model's hidden size is ${d}`);
    const src = o.at.sourceLayer ?? null;
    if (src !== null && src !== S) rep.warn(`${label} was computed at source_layer ${src} (its file's metadata) but is used as the steering point at layer ${S}`);
    const scale = o.at.scale ?? 1;
    at = o.at.vector.map((x) => x * scale);
  }
  let init: Float64Array[] | undefined;
  if (o.init) {
    init = o.init.vectors.map((v) => Float64Array.from(v));
    if (init.some((v) => v.length !== d)) throw new InputError(`${o.init.label ?? "init"}: vectors have length ${init[0].length}, the model's hidden size is ${d}`);
    init = init.slice(0, n);
  }
  const site = { sourceLayer: S, targetLayer: T, positions: K, at };
  const blockSize = method === "lanczos" ? (o.blockSize ?? autoBlockSize(n, prompts)) : n;
  const name = o.model.name ?? "model";
  const rt = o.runtime;

  return withGemm(batched ? o : { ...o, createGemm: undefined }, async (gemm) => {
    const usedThreads = batched ? (gemm?.threads ?? 1) : 1;
    log(
      `jacsteer: ${name}: ${L} layers, hidden ${d}; S=${S} T=${T} ${typeof K === "number" ? `K=${K}` : `positions ${describePositions(K)}${describePositionWeights(K) ? ` weights ${describePositionWeights(K)}` : ""}`}; ` +
        `${prompts.length} prompt(s) of ${prompts.map((p) => p.length).join(", ")} tokens; method ${method}${method === "lanczos" ? ` (block size ${blockSize}${o.blockSize === undefined ? ", auto" : ""})` : ""}; threads ${usedThreads}` +
        (batched ? "" : (o.threads ?? 1) > 1 ? ` (the ${method} reference path is single-threaded)` : ""),
    );
    const info: PowerIterRunInfo = { prompts, sourceLayer: S, targetLayer: T, positions: K, method, numVectors: n, blockSize, tol, maxIters, seed, init, at, kernels: rt.build };
    o.solverHooks?.begin?.(info);
    throwIfAborted(o.signal);
    // The operator A = J^T J on a block of vectors: the batched engine, or the autodiff reference.
    let engine: SteeringEngine | undefined;
    let op: BlockOperator;
    if (batched) {
      engine = await SteeringEngine.create(rt, cfg, o.model.tensors, prompts, site, { gemm, log, weights: o.weights ?? "auto" });
      const e = engine;
      op = { dim: d, applyBlock: (V) => e.normalProducts(V) };
    } else {
      const ctx = new AutodiffContext(rt);
      const advice = `the ${method} reference keeps them resident; use --method lanczos, which streams the weights and runs any model size`;
      const model = ctx.noGrad(() => loadQwen3Weights(ctx, cfg, o.model.tensors, { layers: T + 1, advice }));
      const J = new SteeringJacobian(new Qwen3Model(ctx, cfg, model), prompts, site);
      op = { dim: d, applyBlock: (V) => V.map((v) => Float64Array.from(J.normalProduct(Float32Array.from(v), method as ProductMethod))) };
    }
    let result: SolveResult;
    try {
      const signal = o.signal;
      const inner = op;
      // Abort between block products, each the unit of work (seconds on a large model). A product on
      // this thread may never leave the microtask queue, so without a signal nothing waits; with one,
      // a turn of the event loop first lets an abort from a timer or an event arrive.
      const abortable: BlockOperator = signal
        ? { dim: d, applyBlock: async (V) => (await turnEventLoop(), throwIfAborted(signal), inner.applyBlock(V)) }
        : inner;
      const solved = o.solverHooks ? o.solverHooks.wrap(abortable) : abortable;
      const lanczos = method === "lanczos";
      const eta = solverEta(method, tol, maxIters);
      let last = performance.now();
      const onProgress = (p: Progress) => {
        const now = performance.now();
        eta.observe({ block: p.iteration, metric: solverEtaMetric(method, p), seconds: (now - last) / 1000 });
        last = now;
        const line = progressLine(method, p);
        const event: PowerIterProgress = { ...p, eta: eta.estimate(), etaText: eta.format(), line };
        if (o.solverHooks?.progress) o.solverHooks.progress(event);
        else log(`${line} | ${event.etaText}`);
        o.onProgress?.(event);
      };
      const solve = () =>
        lanczos
          ? blockLanczosAsync(solved, { numVectors: n, blockSize, tol, seed, init, onProgress, maxIters })
          : blockPowerIterationAsync(solved, { numVectors: n, maxIters: maxIters!, tol, seed, init, onProgress });
      result = await (o.solverHooks ? o.solverHooks.run(solve) : solve());
    } finally {
      await engine?.close();
    }
    const weightStats = engine ? engineWeightStats(engine) : null;
    if (engine?.stream) {
      const st = engine.stream;
      log(`engine: streamed ${st.reads} layer reads (${(st.bytesRead / 1e9).toFixed(1)} GB); the products waited ${st.waitSeconds.toFixed(1)} s for reads`);
    }
    const atBytes = svBytes(at);
    // The file's metadata: one builder for the command line, this call and the browser page.
    const { metadata } = powerIterVectorSet({
      result,
      method,
      modelName: name,
      modelPath: o.model.dir ?? "",
      config: cfg,
      sourceLayer: S,
      targetLayer: T,
      positions: K,
      seed,
      numVectors: n,
      blockSize,
      prompts,
      chat: !!o.chat,
      tol,
      maxIters,
      threads: usedThreads,
      kernels: rt.build,
      at: o.at === undefined ? undefined : { arg: o.at.ref ?? "(vector)", scale: o.at.scale ?? 1, sha256: atBytes ? await sha256Hex(atBytes) : "" },
      init: o.init === undefined ? undefined : (o.init.ref ?? "(vectors)"),
    });
    return {
      vectors: result.vectors.map((v) => Float32Array.from(v)),
      singularValues: result.singularValues,
      residuals: result.residuals,
      relativeResiduals: result.relativeResiduals,
      iterations: result.iterations,
      products: result.products,
      blockSize,
      converged: result.converged,
      seconds: rep.seconds(),
      tokens: prompts,
      sourceLayer: S,
      targetLayer: T,
      positions: K,
      method,
      threads: usedThreads,
      kernels: rt.build,
      peakWasmBytes: rt.heap.peakBytes,
      weights: weightStats,
      metadata,
      warnings: rep.warnings,
    };
  });
}

function engineWeightStats(e: SteeringEngine): EngineWeightStats {
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

