// The page's compute worker: `power-iter --method lanczos` on a checkpoint folder the user picked,
// the command line's steps in the command line's order (src/cli/power-iter.ts), so the vector file is
// bitwise the same for the same thread count: open the checkpoint (src/web/file-checkpoint.ts),
// tokenize with its tokenizer.json (and chat template), the batched engine over Web Workers
// (src/web/worker-gemm.ts), block Lanczos, the vector file (src/io/power-iter-file.ts). Runs in a
// dedicated worker so the page stays responsive and files can be read synchronously.
import { createWebRuntime } from "./runtime.js";
import { SteeringEngine, autoBlockSize } from "../engine/steering-engine.js";
import { SharedCounterGemm } from "../engine/parallel-gemm.js";
import { blockLanczosAsync } from "../solvers/block-lanczos.js";
import { progressLine, solverEta, solverEtaMetric } from "../solvers/eta.js";
import type { BlockOperator, Progress } from "../solvers/common.js";
import { checkSiteLayers, defaultLayers } from "../jacobian/steering-jacobian.js";
import { InputError } from "../model/qwen3.js";
import { renderPrompt } from "../tokenizer/tokenizer.js";
import { encodeVectorFile } from "../io/vector-file.js";
import { powerIterVectorSet } from "../io/power-iter-file.js";
import { openPickedCheckpoint } from "./file-checkpoint.js";
import { createWebGemm } from "./worker-gemm.js";
import type { DriverMessage, RunRequest, RunResult } from "./protocol.js";

/**
 * `auto` keeps layers S+1..T resident in a tab only up to 1 GiB (the command line: 2 GiB). A tab holds
 * more than the engine's memory (most likely the File.slice reads' buffers awaiting collection). On
 * the 1.7B shape (bench/results/web-1.7b*.md) the renderer peaked at 3.13 GB with the 1.6 GB of layers
 * resident and at 1.89 GB streamed (the whole browser 2.86 GB), so 1.7B streams and stays within 3 GB;
 * the 0.6B shape's 0.44 GB of layers stay resident.
 */
const TAB_RESIDENT_BUDGET = 2 ** 30;

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent) => void) | null; postMessage(m: unknown, transfer?: Transferable[]): void };
const post = (m: DriverMessage, transfer?: Transferable[]) => scope.postMessage(m, transfer);
const log = (line: string) => post({ type: "log", line });

export async function runPowerIter(req: RunRequest): Promise<RunResult> {
  const started = performance.now();
  const { checkpoint: ckpt, tokenizer } = openPickedCheckpoint(req.files);
  try {
    const L = ckpt.config.numLayers;
    const defaults = defaultLayers(L);
    const S = req.sourceLayer ?? defaults.source;
    const T = req.targetLayer ?? defaults.target;
    if (req.sourceLayer === undefined || req.targetLayer === undefined) log(`using S ${S}, T ${T} (defaults for a ${L}-layer model; the seed used 6 and 20 of 28)`);
    checkSiteLayers(L, S, T);
    const d = ckpt.config.hiddenSize;
    const n = req.numVectors;
    if (!Number.isInteger(n) || n < 1 || n > d) throw new InputError(`n ${n}: must be an integer in 1..${d} (the hidden size)`);
    if (req.tokens && req.chat) throw new InputError("the chat template applies to a text prompt, not to token ids");
    if (!req.tokens && !req.prompt) throw new InputError("no prompt given");
    const prompts = [req.tokens ?? renderPrompt(await tokenizer(), req.prompt, { chat: req.chat })];
    // As the command line: without an explicit K, the default 4 shrinks to the prompt's length.
    let K = req.positions ?? 4;
    if (req.positions === undefined && prompts[0]!.length < K) {
      log(`the prompt has ${prompts[0]!.length} token(s), fewer than the default K = ${K}: using K = ${prompts[0]!.length}`);
      K = prompts[0]!.length;
    }
    const rt = await createWebRuntime({ prefer: req.kernels });
    // The command line's automatic block size (power-iter --block-size), so both give the same file.
    const blockSize = autoBlockSize(n, prompts);
    log(`${ckpt.name}: ${L} layers, hidden ${d}; S=${S} T=${T} K=${K}; prompt of ${prompts[0]!.length} tokens; block size ${blockSize}; threads ${req.threads}; kernels ${rt.build}`);
    const gemm = await createWebGemm(rt, req.threads, new URL("gemm-worker.js", import.meta.url), { minParallelFlops: req.minParallelFlops });
    let engine: SteeringEngine;
    try {
      engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: S, targetLayer: T, positions: K }, { gemm, log, weights: req.weights, residentBudgetBytes: TAB_RESIDENT_BUDGET });
    } catch (e) {
      await gemm.close();
      throw e;
    }
    const op: BlockOperator = { dim: d, applyBlock: (V) => engine.normalProducts(V) };
    const eta = solverEta("lanczos", req.tol, req.maxIters);
    let last = performance.now();
    const onProgress = (p: Progress) => {
      const now = performance.now();
      const metric = solverEtaMetric("lanczos", p);
      eta.observe({ block: p.iteration, metric, seconds: (now - last) / 1000 });
      last = now;
      post({ type: "progress", iteration: p.iteration, line: progressLine("lanczos", p), eta: eta.format(), relativeResidual: metric, tol: req.tol });
    };
    let result;
    try {
      result = await blockLanczosAsync(op, { numVectors: n, blockSize, tol: req.tol, seed: req.seed, onProgress, maxIters: req.maxIters });
    } finally {
      await engine.close();
    }
    const seconds = (performance.now() - started) / 1000;
    const set = powerIterVectorSet({
      result,
      method: "lanczos",
      modelName: ckpt.name,
      modelPath: ckpt.dir,
      config: ckpt.config,
      sourceLayer: S,
      targetLayer: T,
      positions: K,
      seed: req.seed,
      numVectors: n,
      blockSize,
      prompts,
      chat: req.chat,
      tol: req.tol,
      maxIters: req.maxIters,
      threads: req.threads,
      kernels: rt.build,
    });
    return {
      file: encodeVectorFile(set),
      fileName: `${ckpt.name}-S${S}-T${T}.safetensors`,
      singularValues: result.singularValues,
      residuals: result.residuals,
      relativeResiduals: result.relativeResiduals,
      iterations: result.iterations,
      products: result.products,
      converged: result.converged,
      seconds,
      threads: req.threads,
      kernels: rt.build,
      sourceLayer: S,
      targetLayer: T,
      positions: K,
      tokens: prompts,
      model: ckpt.name,
      weightMode: engine.weightPlan.mode,
      peakWasmBytes: rt.heap.peakBytes,
      workerUnits: gemm instanceof SharedCounterGemm ? gemm.workerUnits : 0,
    };
  } finally {
    ckpt.close();
  }
}

scope.onmessage = (e: MessageEvent<RunRequest>) => {
  if (e.data?.type !== "run") return;
  runPowerIter(e.data).then(
    (result) => post({ type: "done", result }, [result.file.buffer as ArrayBuffer]),
    (err) => post({ type: "error", message: ((err as Error)?.message ?? String(err)).split("\n")[0]! }),
  );
};
