// `jacsteer melbo`: MELBO steering vectors (src/melbo/): n orthogonal vectors of norm R that maximise
// how far they move layer T's output at the target positions, written as a vector file (CONTRACT.md
// section 3, method "melbo").
import { createHash } from "node:crypto";
import { intFlag, numberFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, defaultLayers, defaultModelDir, log, resolvePrompts, warn, warnings, PROMPT_OPTIONS, promptFlags, SITE_OPTIONS } from "./session.js";
import { encodeVectorFile } from "../io/vector-file.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { describePositions, describePositionWeights, positionsFromFlags } from "../jacobian/positions.js";
import { checkSiteLayers } from "../jacobian/steering-jacobian.js";
import { DEFAULT_RADIUS_FACTOR, MELBO_ADAMW, MELBO_DEFAULTS, defaultRadius, lateRiseWarnings, melboEvaluations, trainMelboAsync, type MelboResult } from "../melbo/melbo.js";
import { EngineMelboObjective } from "../melbo/engine-objective.js";
import { SteeringEngine } from "../engine/steering-engine.js";
import { createParallelGemm } from "../node/thread-pool.js";
import { createNodeRuntime } from "../node/runtime.js";
import { openCheckpoint } from "../node/checkpoint.js";
import { LONG_RUN_OPTIONS, LongRun, melboIdentity, stateFlags } from "./long-run.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag } from "./weights-flag.js";
import { melboMetadata } from "../io/melbo-file.js";

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

export async function melbo(argv: string[]): Promise<number> {
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
  const radiusFlag = positiveNumber(f, "radius", undefined);
  const weightDecay = numberFlag(f, "weight-decay", MELBO_ADAMW.weightDecay)!;
  if (weightDecay < 0) throw new UsageError(`--weight-decay ${weightDecay}: must not be negative`);
  if (lr * weightDecay >= 1) throw new UsageError(`--weight-decay ${weightDecay} with --lr ${lr}: lr x weight decay must be below 1`);
  const seed = intFlag(f, "seed", 0, 0)!;
  const threads = threadsFlag(f, log);
  const weights = weightsFlag(f);
  checkOutPath(f.out as string | undefined);
  const state = stateFlags(f);

  const started = performance.now();
  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  let result: MelboResult, objective: EngineMelboObjective, engine: SteeringEngine | undefined;
  let radius: number, medianNorm: number, prompts: number[][], build: string, S: number, T: number, L: number, d: number;
  try {
    L = ckpt.config.numLayers;
    const defaults = defaultLayers(L);
    S = intFlag(f, "source-layer", defaults.source)!;
    T = intFlag(f, "target-layer", defaults.target)!;
    if (f["source-layer"] === undefined || f["target-layer"] === undefined) {
      log(`jacsteer: using --source-layer ${S} --target-layer ${T} (defaults for a ${L}-layer model; the seed used 6 and 20 of 28)`);
    }
    checkSiteLayers(L, S, T);
    d = ckpt.config.hiddenSize;
    if (n > d) throw new UsageError(`--num-vectors ${n} exceeds the hidden size ${d}: that many orthogonal vectors do not exist`);
    prompts = await resolvePrompts(promptFlags(f), ckpt);
    const rt = await createNodeRuntime();
    build = rt.build;
    log(
      `jacsteer: ${ckpt.name}: ${L} layers, hidden ${d}; S=${S} T=${T} positions ${describePositions(positions)}${describePositionWeights(positions) ? ` weights ${describePositionWeights(positions)}` : ""}; ` +
        `${prompts.length} prompt(s) of ${prompts.map((t) => t.length).join(", ")} tokens; threads ${threads}; kernels ${rt.build}`,
    );
    const gemm = await createParallelGemm(rt, threads);
    try {
      engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: S, targetLayer: T, positions }, { gemm, log, weights });
    } catch (e) {
      await gemm.close();
      throw e;
    }
    try {
      objective = new EngineMelboObjective(engine, { p, q });
      const norms = objective.sourceNorms();
      radius = radiusFlag ?? defaultRadius(norms);
      medianNorm = defaultRadius(norms) / DEFAULT_RADIUS_FACTOR;
      log(
        `jacsteer: radius R = ${radius.toPrecision(6)}${radiusFlag === undefined ? ` (default: ${DEFAULT_RADIUS_FACTOR} x the median layer-${S} norm ${medianNorm.toPrecision(6)}; set --radius to tune)` : ` (median layer-${S} norm ${medianNorm.toPrecision(6)})`}; ` +
          `p ${p}, q ${q}, lr ${lr}, ${steps} steps, ${n} vector(s)`,
      );
      // Each evaluation of the objective is one "block" of the long run: its answer [loss, gradient]
      // is what the state file logs and --resume replays (the training is a deterministic function of them).
      const total = melboEvaluations(n, steps);
      const identity = melboIdentity({ config: ckpt.config, modelName: ckpt.name, prompts, sourceLayer: S, targetLayer: T, positions, numVectors: n, steps, radius, p, q, lr, weightDecay, seed, kernels: rt.build });
      const longRun = new LongRun({ ...state, identity, dim: d + 1, method: "melbo", tol: 0, maxIters: total, unit: "evaluation", log });
      const obj = objective;
      const resumable = longRun.wrap({
        dim: d + 1,
        applyBlock: async ([sv]) => {
          const { loss, gradient } = await obj.evaluate({ sv: sv!, gradient: gradientNext });
          const w = new Float64Array(d + 1);
          w[0] = loss;
          if (gradient) w.set(gradient, 1);
          return [w];
        },
      });
      let gradientNext = true;
      let evaluations = 0;
      const every = Math.max(1, Math.round(steps / 10));
      result = await longRun.run(() =>
        trainMelboAsync(
          d,
          async (r) => {
            gradientNext = r.gradient;
            const [w] = await resumable.applyBlock([r.sv]);
            evaluations++;
            return { loss: w![0]!, gradient: r.gradient ? w!.subarray(1) : null };
          },
          {
            numVectors: n,
            steps,
            radius,
            seed,
            adam: { ...MELBO_ADAMW, lr, weightDecay },
            onStep: ({ vector, step, loss }) => {
              const print = step === 1 || step % every === 0 || step === steps;
              longRun.step(evaluations, print ? `vector ${vector + 1}/${n} step ${step}/${steps}: loss ${loss.toPrecision(6)}` : null);
            },
          },
        ),
      );
    } finally {
      await engine.close();
    }
    if (engine.stream) {
      const st = engine.stream;
      log(`engine: streamed ${st.reads} layer reads (${(st.bytesRead / 1e9).toFixed(1)} GB); the steps waited ${st.waitSeconds.toFixed(1)} s for reads`);
    }
  } finally {
    ckpt.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const { rises, warnings: lateWarnings } = lateRiseWarnings(result, steps);
  lateWarnings.forEach((w) => warn(w));

  const vectors = result.vectors.map((v) => Float32Array.from(v));
  const metadata = melboMetadata({
    modelName: ckpt.name,
    modelPath: ckpt.dir,
    config: ckpt.config,
    sourceLayer: S,
    targetLayer: T,
    positions,
    seed,
    numVectors: n,
    radius,
    radiusDefault: radiusFlag === undefined,
    p,
    q,
    lr,
    weightDecay,
    steps,
    finalLosses: result.finalLosses,
    losses: result.losses,
    prompts,
    tokensSha256: createHash("sha256").update(JSON.stringify(prompts)).digest("hex"),
    chat: !!f.chat,
    threads,
    weights: engine.weightPlan.mode,
    kernels: build,
  });
  if (f.out !== undefined) {
    writeFileAtomic(f.out as string, encodeVectorFile({ vectors, metadata }));
    log(`jacsteer: wrote ${f.out}`);
  }
  if (f.json) {
    const summary = {
      final_losses: result.finalLosses,
      losses: result.losses,
      radius,
      median_source_norm: medianNorm,
      p,
      q,
      lr,
      weight_decay: weightDecay,
      steps,
      num_vectors: n,
      evaluations: objective.evaluations,
      seconds,
      tokens: prompts,
      source_layer: S,
      target_layer: T,
      positions: typeof positions === "number" ? positions : describePositions(positions),
      position_weights: describePositionWeights(positions) || null,
      model: ckpt.name,
      kernels: build,
      threads,
      weights: engine.weightPlan.mode,
      out: f.out ?? null,
      late_rise: rises,
      warnings: warnings(),
    };
    process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
  } else {
    const lines = [`  i  loss at start   final loss`];
    result.finalLosses.forEach((l, i) => lines.push(`${String(i).padStart(3)}  ${result.losses[i][0].toPrecision(6).padEnd(14)}  ${l.toPrecision(6)}`));
    lines.push(`${n} vector(s) of norm ${radius.toPrecision(6)}, ${steps} steps each, ${seconds.toFixed(2)} s`);
    process.stdout.write(lines.join("\n") + "\n");
  }
  return 0;
}
