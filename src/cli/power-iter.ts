// `jacsteer power-iter`: top right singular vectors of the steering Jacobian (CONTRACT.md sections 1-3).
// A thin layer over the library's powerIter (src/api/power-iter.ts): flags, files, --state/--resume and
// signals (long-run.ts), the table or JSON, --out and --verify-against.
import { intFlag, numberFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, defaultModelDir, log, promptInputs, readVectorArg, readVectorsArg, warn, warnings, PROMPT_OPTIONS, promptFlags, SITE_OPTIONS } from "./session.js";
import { parseVectorRef, encodeVectorFile, type VectorSet } from "../io/vector-file.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { describePositions, describePositionWeights, positionsFromFlags } from "../jacobian/positions.js";
import { openCheckpoint } from "../node/checkpoint.js";
import * as api from "../node/api.js";
import { POWER_ITER_METHODS, type PowerIterMethod, type PowerIterOptions, type PowerIterResult } from "../api/power-iter.js";
import type { VerifyOptions } from "../verify/verify.js";
import { verifyVectorSets } from "../verify/verify.js";
import { emitReport, readVectorSet, verifyOptionsFrom } from "./verify.js";
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
                           matrix products 192 rows, at least 2 and at most --num-vectors; printed). Smaller
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

export async function powerIter(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(POWER_ITER_HELP);
    return 0;
  }
  const method = ((f.method as string | undefined) ?? "lanczos") as PowerIterMethod;
  if (!POWER_ITER_METHODS.includes(method)) throw new UsageError(`--method ${method}: expected one of ${POWER_ITER_METHODS.join(", ")}`);
  const weights = f.weights === undefined ? undefined : weightsFlag(f);
  const K = positionsFromFlags(
    { positions: f.positions as string | undefined, positionList: f["position-list"] as string | undefined, positionWeights: f["position-weights"] as string | undefined, allPositions: !!f["all-positions"] },
    4,
  );
  const n = intFlag(f, "num-vectors", 8, 1)!;
  const maxIters = intFlag(f, "max-iters", undefined, 1);
  const blockSize = intFlag(f, "block-size", undefined, 1);
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

  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  try {
    const d = ckpt.config.hiddenSize;
    const sourceLayer = intFlag(f, "source-layer", undefined);
    const targetLayer = intFlag(f, "target-layer", undefined);
    const prompts = promptInputs(promptFlags(f));
    // --at and --init are read before the run (errors name the flag); the run checks them against the model.
    let at: PowerIterOptions["at"];
    if (f.at !== undefined) {
      const { vector, sourceLayer: atLayer } = readVectorArg(f.at as string, "--at", d);
      at = { vector, scale: atScale, sourceLayer: atLayer, label: `--at ${f.at}`, ref: String(f.at) };
    }
    let init: PowerIterOptions["init"];
    if (f.init !== undefined) {
      const ref = parseVectorRef(f.init as string);
      const vectors = ref.row === null ? readVectorsArg(ref.file, "--init") : [readVectorArg(f.init as string, "--init", d).vector];
      init = { vectors, label: `--init ${f.init}`, ref: String(f.init) };
    }
    let longRun: LongRun | undefined;
    const result = await api.powerIter({
      model: ckpt,
      threads,
      prompts,
      chat: !!f.chat,
      system: f.system as string | undefined,
      sourceLayer,
      targetLayer,
      positions: f.positions === undefined && typeof K === "number" ? undefined : K,
      numVectors: n,
      method,
      maxIters,
      blockSize,
      tol,
      seed,
      at,
      init,
      weights,
      log,
      onWarning: warn,
      solverHooks: {
        begin: (run) => {
          const identity = runIdentity({ config: ckpt.config, modelName: ckpt.name, prompts: run.prompts, sourceLayer: run.sourceLayer, targetLayer: run.targetLayer, positions: run.positions, method, numVectors: n, blockSize: run.blockSize, tol, maxIters: run.maxIters, seed, init: run.init, at: run.at, kernels: run.kernels });
          longRun = new LongRun({ ...state, identity, dim: d, method, tol, maxIters: run.maxIters, log });
        },
        wrap: (op) => longRun!.wrap(op),
        run: (solve) => longRun!.run(solve),
        progress: (p) => longRun!.progress(p, p.line),
      },
    });
    return finish(f, result, reference, verifyOpts);
  } finally {
    ckpt.close();
  }
}

/** Write the vector file, print the summary, verify against a reference if asked. */
function finish(f: Record<string, unknown>, result: PowerIterResult, reference: VectorSet | undefined, verifyOpts: VerifyOptions): number {
  const { metadata, method, positions: K, threads: usedThreads, seconds } = result;
  // The residual certificate relative to sigma_1^2, per vector.
  const relative = result.relativeResiduals;
  const vectorSet = { vectors: result.vectors, singularValues: result.singularValues, residuals: result.residuals, metadata };
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
      block_size: result.blockSize,
      converged: result.converged,
      seconds,
      tokens: result.tokens,
      method,
      source_layer: result.sourceLayer,
      target_layer: result.targetLayer,
      positions: typeof K === "number" ? K : describePositions(K),
      position_weights: describePositionWeights(K) || null,
      model: metadata.model,
      kernels: result.kernels,
      threads: usedThreads,
      peak_wasm_bytes: result.peakWasmBytes,
      weights: result.weights,
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
