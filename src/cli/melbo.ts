// `jacsteer melbo`: MELBO steering vectors (src/melbo/): n orthogonal vectors of norm R that maximise
// how far they move layer T's output at the target positions, written as a vector file (CONTRACT.md
// section 3, method "melbo"). A thin layer over the library's melbo (src/api/melbo.ts): flags, files,
// --state/--resume and signals (long-run.ts, plugged in as the call's hooks), the table or JSON, --out.
import { intFlag, numberFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, defaultModelDir, log, promptInputs, warn, warnings, PROMPT_OPTIONS, promptFlags, SITE_OPTIONS } from "./session.js";
import { encodeVectorFile } from "../io/vector-file.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { describePositions, describePositionWeights, positionsFromFlags } from "../jacobian/positions.js";
import { DEFAULT_RADIUS_FACTOR, MELBO_ADAMW, MELBO_DEFAULTS } from "../melbo/melbo.js";
import { openCheckpoint } from "../node/checkpoint.js";
import * as api from "../node/api.js";
import { LONG_RUN_OPTIONS, LongRun, melboIdentity, stateFlags } from "./long-run.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag } from "./weights-flag.js";

export const MELBO_HELP = `jacsteer melbo: MELBO steering vectors: n orthogonal vectors sv of norm R maximising
  ( sum over prompts and target positions t of ||h_T,t(sv) - h_T,t(0)||^p )^(1/q)
where sv is added to the output of layer S at every position and h_T,t is layer T's output at t.

  --model DIR              checkpoint directory (default: the bundled tiny model)
  --prompt TEXT            a prompt (repeatable); --prompts FILE (one per line, or a .json array); --tokens 1,2,3 (repeatable)
  --chat, --system TEXT    render prompts with the checkpoint's chat template (thinking disabled)
  --source-layer S         layer whose output receives the steering vector (default: scaled from the seed's 6 of 28)
  --target-layer T         layer whose output is the target (default: scaled from the seed's 20 of 28)
  --positions K            last K token positions (default ${MELBO_DEFAULTS.positions}, as the MELBO experiments of the seed)
  --position-list 3,7,-1   explicit positions instead (negative counts from the end, -1 = last token)
  --all-positions          every position of each prompt
  --position-weights W,... one weight per selected position, multiplying that position's displacement
  --num-vectors N          how many orthogonal vectors (default ${MELBO_DEFAULTS.numVectors})
  --radius R               norm of every vector (default ${DEFAULT_RADIUS_FACTOR} x the median norm of the unsteered
                           layer-S output over all positions of the prompts; printed)
  --steps N                optimiser steps per vector (default ${MELBO_DEFAULTS.steps})
  --lr X                   AdamW learning rate (default ${MELBO_DEFAULTS.lr}); betas ${MELBO_ADAMW.beta1}/${MELBO_ADAMW.beta2}, amsgrad
  --weight-decay X         AdamW decoupled weight decay (default ${MELBO_ADAMW.weightDecay}, as the MELBO code)
  --p P, --q Q             exponents of the objective (default p ${MELBO_DEFAULTS.p}, q ${MELBO_DEFAULTS.q})
  --seed N                 random start of each vector (default 0)
  --threads N              worker threads (default: all cores; more than the cores is capped, with a line)
  --weights MODE           layers S+1..T, kept in their stored dtype (BF16 stays BF16):
                             resident  read once and kept
                             stream    read from the checkpoint every step (two layers in memory: any size)
                             auto      resident when they fit 2 GiB, else stream (default; printed)
  --out FILE.safetensors   write the vectors and run metadata (method "melbo")
  --json                   print a JSON summary (final losses, loss curves, radius, ...) on stdout
  --quiet                  no progress on stderr (warnings and errors still appear)
  --state FILE             save the run to FILE after every step (atomically: the objective's value and
                           gradient at every point so far), so an interrupted run can be continued;
                           refuses to overwrite an existing FILE
  --resume FILE            continue the run saved in FILE (same command and flags; refused with a line
                           naming what differs otherwise), saving to FILE unless --state says elsewhere;
                           the vectors are bitwise those of an uninterrupted run

Each step runs layers S+1..T forward at the current vector for all prompts together and takes the
gradient from the batched VJP power-iter uses (the steering engine); the vectors do not depend on
--threads or --weights. Progress lines end with the time left.
`;

const OPTIONS: Options = {
  ...PROMPT_OPTIONS,
  ...SITE_OPTIONS,
  "num-vectors": { type: "string" },
  radius: { type: "string" },
  steps: { type: "string" },
  lr: { type: "string" },
  "weight-decay": { type: "string" },
  p: { type: "string" },
  q: { type: "string" },
  seed: { type: "string" },
  threads: { type: "string" },
  weights: { type: "string" },
  out: { type: "string" },
  json: { type: "boolean" },
  ...LONG_RUN_OPTIONS,
  help: { type: "boolean", short: "h" },
};

/** A number flag that must be positive (also used by dct and linearity). */
export function positiveNumber(f: Record<string, unknown>, name: string, fallback: number | undefined): number | undefined {
  const x = numberFlag(f, name, fallback);
  if (x !== undefined && !(x > 0)) throw new UsageError(`--${name} ${x}: must be positive`);
  return x;
}

/**
 * `signal` is for callers that run the command in-process (the tests): aborting rejects with the
 * library's AbortError at the next optimiser step, and no --out file is written.
 */
export async function melbo(argv: string[], opts: { signal?: AbortSignal } = {}): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(MELBO_HELP);
    return 0;
  }
  const positions = positionsFromFlags(
    { positions: f.positions as string | undefined, positionList: f["position-list"] as string | undefined, positionWeights: f["position-weights"] as string | undefined, allPositions: !!f["all-positions"] },
    MELBO_DEFAULTS.positions,
  );
  const n = intFlag(f, "num-vectors", MELBO_DEFAULTS.numVectors, 1)!;
  const steps = intFlag(f, "steps", MELBO_DEFAULTS.steps, 1)!;
  const lr = positiveNumber(f, "lr", MELBO_DEFAULTS.lr)!;
  const p = positiveNumber(f, "p", MELBO_DEFAULTS.p)!;
  const q = positiveNumber(f, "q", MELBO_DEFAULTS.q)!;
  const radius = positiveNumber(f, "radius", undefined);
  const weightDecay = numberFlag(f, "weight-decay", MELBO_ADAMW.weightDecay)!;
  const seed = intFlag(f, "seed", 0, 0)!;
  const threads = threadsFlag(f, log);
  const weights = weightsFlag(f);
  checkOutPath(f.out as string | undefined);
  const state = stateFlags(f);

  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  let result: api.MelboApiResult;
  try {
    let longRun: LongRun | undefined;
    result = await api.melbo({
      model: ckpt,
      threads,
      prompts: promptInputs(promptFlags(f)),
      chat: !!f.chat,
      system: f.system as string | undefined,
      sourceLayer: intFlag(f, "source-layer", undefined),
      targetLayer: intFlag(f, "target-layer", undefined),
      positions,
      numVectors: n,
      radius,
      steps,
      lr,
      weightDecay,
      p,
      q,
      seed,
      weights,
      signal: opts.signal,
      log,
      onWarning: warn,
      // Each evaluation of the objective is one "block" of the long run: its answer [loss, gradient]
      // is what the state file logs and --resume replays.
      longRun: {
        begin: (run) => {
          const identity = melboIdentity({ config: ckpt.config, modelName: ckpt.name, ...run });
          longRun = new LongRun({ ...state, identity, dim: ckpt.config.hiddenSize + 1, method: "melbo", tol: 0, maxIters: run.evaluations, unit: "evaluation", log });
        },
        wrap: (op) => longRun!.wrap(op),
        run: (train) => longRun!.run(train),
        step: (evaluations, line) => longRun!.step(evaluations, line),
      },
    });
  } finally {
    ckpt.close();
  }
  const { metadata, radius: R } = result;
  if (f.out !== undefined) {
    writeFileAtomic(f.out as string, encodeVectorFile({ vectors: result.vectors, metadata }));
    log(`jacsteer: wrote ${f.out}`);
  }
  if (f.json) {
    const summary = {
      final_losses: result.finalLosses,
      losses: result.losses,
      radius: R,
      median_source_norm: result.medianSourceNorm,
      p,
      q,
      lr,
      weight_decay: weightDecay,
      steps,
      num_vectors: n,
      evaluations: result.evaluations,
      seconds: result.seconds,
      tokens: result.tokens,
      source_layer: result.sourceLayer,
      target_layer: result.targetLayer,
      positions: typeof positions === "number" ? positions : describePositions(positions),
      position_weights: describePositionWeights(positions) || null,
      model: ckpt.name,
      kernels: result.kernels,
      threads: result.threads,
      weights: result.weights,
      out: f.out ?? null,
      late_rise: result.lateRise,
      warnings: warnings(),
    };
    process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
  } else {
    const lines = [`  i  loss at start   final loss`];
    result.finalLosses.forEach((l, i) => lines.push(`${String(i).padStart(3)}  ${result.losses[i]![0]!.toPrecision(6).padEnd(14)}  ${l.toPrecision(6)}`));
    lines.push(`${n} vector(s) of norm ${R.toPrecision(6)}, ${steps} steps each, ${result.seconds.toFixed(2)} s`);
    process.stdout.write(lines.join("\n") + "\n");
  }
  return 0;
}
