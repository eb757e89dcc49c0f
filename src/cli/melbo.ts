// `jacsteer melbo`: MELBO steering vectors (src/melbo/): n orthogonal vectors of norm R that maximise
// how far they move layer T's output at the target positions, written as a vector file (CONTRACT.md
// section 3, method "melbo").
import { createHash } from "node:crypto";
import { intFlag, numberFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, defaultLayers, defaultModelDir, loadModel, log, resolvePrompts, warn, warnings, PROMPT_OPTIONS, promptFlags, SITE_OPTIONS } from "./session.js";
import { encodeVectorFile } from "../io/vector-file.js";
import { modelConfigKey } from "../io/run-identity.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { describePositions, describePositionWeights, positionsFromFlags } from "../jacobian/positions.js";
import { DEFAULT_RADIUS_FACTOR, MELBO_ADAMW, MELBO_DEFAULTS, MELBO_MAX_LATE_RISE, MelboObjective, defaultRadius, lateRise, trainMelbo } from "../melbo/melbo.js";

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
  --out FILE.safetensors   write the vectors and run metadata (method "melbo")
  --json                   print a JSON summary (final losses, loss curves, radius, ...) on stdout
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
  out: { type: "string" },
  json: { type: "boolean" },
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
  checkOutPath(f.out as string | undefined);

  const started = performance.now();
  const { openCheckpoint } = await import("../node/checkpoint.js");
  const peek = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  const L = peek.config.numLayers;
  peek.close();
  const defaults = defaultLayers(L);
  const S = intFlag(f, "source-layer", defaults.source)!;
  const T = intFlag(f, "target-layer", defaults.target)!;
  if (f["source-layer"] === undefined || f["target-layer"] === undefined) {
    log(`jacsteer: using --source-layer ${S} --target-layer ${T} (defaults for a ${L}-layer model; the seed used 6 and 20 of 28)`);
  }
  if (S < 0 || S >= L) throw new UsageError(`--source-layer ${S} is out of range: the model has layers 0..${L - 1}`);
  if (T < 0 || T >= L) throw new UsageError(`--target-layer ${T} is out of range: the model has layers 0..${L - 1}`);
  if (S > T) throw new UsageError(`--source-layer ${S} is after --target-layer ${T}: the target must be at or after the steering site`);

  const { rt, ckpt, model } = await loadModel(f.model as string | undefined, { layers: T + 1 });
  const d = model.config.hiddenSize;
  if (n > d) throw new UsageError(`--num-vectors ${n} exceeds the hidden size ${d}: that many orthogonal vectors do not exist`);
  const prompts = await resolvePrompts(
    promptFlags(f),
    ckpt,
  );
  const objective = new MelboObjective(model, prompts, { sourceLayer: S, targetLayer: T, positions });
  const norms = objective.sourceNorms();
  const radius = radiusFlag ?? defaultRadius(norms);
  const medianNorm = defaultRadius(norms) / DEFAULT_RADIUS_FACTOR;
  log(
    `jacsteer: ${ckpt.name}: ${L} layers, hidden ${d}; S=${S} T=${T} positions ${describePositions(positions)}${describePositionWeights(positions) ? ` weights ${describePositionWeights(positions)}` : ""}; ` +
      `${prompts.length} prompt(s) of ${prompts.map((t) => t.length).join(", ")} tokens; kernels ${rt.build}`,
  );
  log(
    `jacsteer: radius R = ${radius.toPrecision(6)}${radiusFlag === undefined ? ` (default: ${DEFAULT_RADIUS_FACTOR} x the median layer-${S} norm ${medianNorm.toPrecision(6)}; set --radius to tune)` : ` (median layer-${S} norm ${medianNorm.toPrecision(6)})`}; ` +
      `p ${p}, q ${q}, lr ${lr}, ${steps} steps, ${n} vector(s)`,
  );

  const every = Math.max(1, Math.round(steps / 10));
  const result = trainMelbo(objective, {
    numVectors: n,
    steps,
    radius,
    seed,
    p,
    q,
    adam: { ...MELBO_ADAMW, lr, weightDecay },
    onStep: ({ vector, step, loss }) => {
      if (step === 1 || step % every === 0 || step === steps) log(`vector ${vector + 1}/${n} step ${step}/${steps}: loss ${loss.toPrecision(6)}`);
    },
  });
  const seconds = (performance.now() - started) / 1000;
  const rises = result.losses.map((curve, i) => lateRise(curve, result.finalLosses[i]));
  rises.forEach((rise, i) => {
    if (rise !== null && rise > MELBO_MAX_LATE_RISE) {
      warn(
        `MELBO vector ${i} is not converged: its objective still rose ${(100 * rise).toFixed(1)}% over the last 10% of the ${steps} steps ` +
          `(more than ${100 * MELBO_MAX_LATE_RISE}%); raise --steps (e.g. --steps ${steps * 10}) or --lr`,
      );
    }
  });

  const vectors = result.vectors.map((v) => Float32Array.from(v));
  const metadata: Record<string, string> = {
    method: "melbo",
    model: ckpt.name,
    model_path: ckpt.dir,
    model_config: modelConfigKey(model.config),
    source_layer: String(S),
    target_layer: String(T),
    positions: describePositions(positions),
    position_weights: describePositionWeights(positions),
    seed: String(seed),
    num_vectors: String(n),
    radius: String(radius),
    radius_default: String(radiusFlag === undefined),
    p: String(p),
    q: String(q),
    lr: String(lr),
    betas: `${MELBO_ADAMW.beta1},${MELBO_ADAMW.beta2}`,
    amsgrad: "true",
    weight_decay: String(weightDecay),
    steps: String(steps),
    final_losses: JSON.stringify(result.finalLosses),
    initial_losses: JSON.stringify(result.losses.map((c) => c[0])),
    tokens: JSON.stringify(prompts),
    tokens_sha256: createHash("sha256").update(JSON.stringify(prompts)).digest("hex"),
    chat: String(!!f.chat),
    dtype: "float32",
    implementation: "jacsteer",
    kernels: rt.build,
  };
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
      kernels: rt.build,
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
  ckpt.close();
  return 0;
}
