// melbo: MELBO steering vectors in one call: n orthogonal vectors of norm R maximising how far they
// move layer T's output at the target positions. Wraps what `jacsteer melbo` calls (MelboObjective and
// trainMelbo on the autodiff model, src/melbo/); src/cli/melbo.ts still has its own copy of this
// orchestration until MELBO moves onto the engine (a concurrent change), when it becomes a thin layer here.
import { describePositions, describePositionWeights, type Positions } from "../jacobian/positions.js";
import { DEFAULT_RADIUS_FACTOR, MELBO_ADAMW, MELBO_DEFAULTS, defaultRadius, lateRiseWarnings, trainMelboAsync } from "../melbo/melbo.js";
import { EngineMelboObjective } from "../melbo/engine-objective.js";
import { SteeringEngine, type WeightMode } from "../engine/steering-engine.js";
import { InputError } from "../model/qwen3.js";
import { LazyTokenizer, Reporter, checkLayer, siteLayers, sha256Hex, throwIfAborted, tokenizePrompts, withGemm, type CommonOptions, type PromptInput, type PromptStyleOptions, type VectorFileResult } from "./common.js";
import { melboMetadata } from "../io/melbo-file.js";

export interface MelboApiOptions extends CommonOptions, PromptStyleOptions {
  prompts: readonly PromptInput[];
  sourceLayer?: number;
  targetLayer?: number;
  /** Last K positions (default 2, as the MELBO experiments) or an explicit choice. */
  positions?: Positions;
  /** Orthogonal vectors (default 8). */
  numVectors?: number;
  /** Norm of every vector (default 0.5 x the median layer-S norm). */
  radius?: number;
  /** Optimiser steps per vector (default 300). */
  steps?: number;
  /** AdamW learning rate (default 1e-3) and decoupled weight decay (default as the MELBO code). */
  lr?: number;
  weightDecay?: number;
  /** Exponents of the objective (default p 2, q 1). */
  p?: number;
  q?: number;
  seed?: number;
  /**
   * After every optimiser step. The steps run synchronously on this thread: an abort is seen at the
   * next step when it comes from this callback (or before the call); a timer's abort waits for the end.
   */
  onProgress?: (p: { vector: number; step: number; steps: number; loss: number }) => void;
  /** Layers S+1..T resident, streamed, or auto (default), as power-iter. */
  weights?: WeightMode;
}

/** Vectors of norm `radius`, mutually orthogonal; losses; the vector file's metadata. */
export interface MelboApiResult extends VectorFileResult {
  finalLosses: number[];
  /** Per vector: the loss at the start of each step. */
  losses: number[][];
  radius: number;
  medianSourceNorm: number;
  /** Per vector: how much the objective still rose over the last 10% of steps (null: too few steps). */
  lateRise: (number | null)[];
  evaluations: number;
  tokens: number[][];
  sourceLayer: number;
  targetLayer: number;
  positions: Positions;
}

export async function melbo(o: MelboApiOptions): Promise<MelboApiResult> {
  const rep = new Reporter(o);
  const log = rep.log;
  const positions = o.positions ?? MELBO_DEFAULTS.positions;
  const n = o.numVectors ?? MELBO_DEFAULTS.numVectors;
  const steps = o.steps ?? MELBO_DEFAULTS.steps;
  const lr = o.lr ?? MELBO_DEFAULTS.lr;
  const p = o.p ?? MELBO_DEFAULTS.p;
  const q = o.q ?? MELBO_DEFAULTS.q;
  const weightDecay = o.weightDecay ?? MELBO_ADAMW.weightDecay;
  const seed = o.seed ?? 0;
  for (const [flag, x] of [["--lr", lr], ["--p", p], ["--q", q], ["--radius", o.radius ?? 1]] as const) if (!(x > 0)) throw new InputError(`${flag} ${x}: must be positive`);
  if (!(Number.isInteger(n) && n >= 1)) throw new InputError(`--num-vectors ${n}: must be at least 1`);
  if (!(Number.isInteger(steps) && steps >= 1)) throw new InputError(`--steps ${steps}: must be at least 1`);
  if (!(weightDecay >= 0)) throw new InputError(`--weight-decay ${weightDecay}: must not be negative`);
  if (lr * weightDecay >= 1) throw new InputError(`--weight-decay ${weightDecay} with --lr ${lr}: lr x weight decay must be below 1`);
  throwIfAborted(o.signal);

  const cfg = o.model.config;
  const L = cfg.numLayers;
  const { S, T } = siteLayers(L, o, log);
  checkLayer(L, S, "--source-layer");
  checkLayer(L, T, "--target-layer");
  if (S > T) throw new InputError(`--source-layer ${S} is after --target-layer ${T}: the target must be at or after the steering site`);
  const d = cfg.hiddenSize;
  const rt = o.runtime;
  const name = o.model.name ?? "model";

  return withGemm(o, async (gemm) => {
    if (n > d) throw new InputError(`--num-vectors ${n} exceeds the hidden size ${d}: that many orthogonal vectors do not exist`);
    const prompts = await tokenizePrompts(o.prompts, o, new LazyTokenizer(o.tokenizer));
    // The steering engine's forward at each point and its batched VJP (as the command line).
    const engine = await SteeringEngine.create(rt, cfg, o.model.tensors, prompts, { sourceLayer: S, targetLayer: T, positions }, { gemm, log, weights: o.weights ?? "auto" });
    try {
    const objective = new EngineMelboObjective(engine, { p, q });
    const norms = objective.sourceNorms();
    const radius = o.radius ?? defaultRadius(norms);
    const medianNorm = defaultRadius(norms) / DEFAULT_RADIUS_FACTOR;
    log(
      `jacsteer: ${name}: ${L} layers, hidden ${d}; S=${S} T=${T} positions ${describePositions(positions)}${describePositionWeights(positions) ? ` weights ${describePositionWeights(positions)}` : ""}; ` +
        `${prompts.length} prompt(s) of ${prompts.map((t) => t.length).join(", ")} tokens; kernels ${rt.build}`,
    );
    log(
      `jacsteer: radius R = ${radius.toPrecision(6)}${o.radius === undefined ? ` (default: ${DEFAULT_RADIUS_FACTOR} x the median layer-${S} norm ${medianNorm.toPrecision(6)}; set --radius to tune)` : ` (median layer-${S} norm ${medianNorm.toPrecision(6)})`}; ` +
        `p ${p}, q ${q}, lr ${lr}, ${steps} steps, ${n} vector(s)`,
    );
    const every = Math.max(1, Math.round(steps / 10));
    const result = await trainMelboAsync(d, (r) => objective.evaluate({ sv: r.sv, gradient: r.gradient }), {
      numVectors: n,
      steps,
      radius,
      seed,
      adam: { ...MELBO_ADAMW, lr, weightDecay },
      onStep: ({ vector, step, loss }) => {
        throwIfAborted(o.signal);
        o.onProgress?.({ vector, step, steps, loss });
        if (step === 1 || step % every === 0 || step === steps) log(`vector ${vector + 1}/${n} step ${step}/${steps}: loss ${loss.toPrecision(6)}`);
      },
    });
    const { rises, warnings: lateWarnings } = lateRiseWarnings(result, steps);
    lateWarnings.forEach((w) => rep.warn(w));
    const metadata = melboMetadata({
      modelName: name,
      modelPath: o.model.dir ?? "",
      config: cfg,
      sourceLayer: S,
      targetLayer: T,
      positions,
      seed,
      numVectors: n,
      radius,
      radiusDefault: o.radius === undefined,
      p,
      q,
      lr,
      weightDecay,
      steps,
      finalLosses: result.finalLosses,
      losses: result.losses,
      prompts,
      tokensSha256: await sha256Hex(JSON.stringify(prompts)),
      chat: !!o.chat,
      threads: engine.threads,
      weights: engine.weightPlan.mode,
      kernels: rt.build,
    });
    return {
      vectors: result.vectors.map((v) => Float32Array.from(v)),
      finalLosses: result.finalLosses,
      losses: result.losses,
      radius,
      medianSourceNorm: medianNorm,
      lateRise: rises,
      evaluations: objective.evaluations,
      tokens: prompts,
      sourceLayer: S,
      targetLayer: T,
      positions,
      kernels: rt.build,
      seconds: rep.seconds(),
      metadata,
      warnings: rep.warnings,
    };
    } finally {
      await engine.close();
    }
  });
}
