// melbo: MELBO steering vectors in one call: n orthogonal vectors of norm R maximising how far they
// move layer T's output at the target positions, on the steering engine (EngineMelboObjective and
// trainMelboAsync, src/melbo/). `jacsteer melbo` (src/cli/melbo.ts) is a thin layer over this: its
// --state/--resume and signal handling come in through `longRun`, as power-iter's do.
import { describePositions, describePositionWeights, type Positions } from "../jacobian/positions.js";
import { DEFAULT_RADIUS_FACTOR, MELBO_ADAMW, MELBO_DEFAULTS, defaultRadius, lateRiseWarnings, melboEvaluations, trainMelboAsync, type MelboResult } from "../melbo/melbo.js";
import { EngineMelboObjective } from "../melbo/engine-objective.js";
import { SteeringEngine, type WeightMode } from "../engine/steering-engine.js";
import { InputError } from "../model/qwen3.js";
import type { BlockOperator } from "../solvers/common.js";
import { LazyTokenizer, Reporter, checkLayer, siteLayers, sha256Hex, throwIfAborted, tokenizePrompts, turnEventLoop, withGemm, type CommonOptions, type LongRunHooks, type PromptInput, type PromptStyleOptions, type VectorFileResult } from "./common.js";
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
   * After every optimiser step. With a `signal`, the event loop turns before every evaluation of the
   * objective, so an abort from a timer or an event is seen at the next step.
   */
  onProgress?: (p: { vector: number; step: number; steps: number; loss: number }) => void;
  /** Layers S+1..T resident, streamed, or auto (default), as power-iter. */
  weights?: WeightMode;
  /** @internal the CLI's state file / resume / signal handling around the training (src/cli/long-run.ts). */
  longRun?: MelboHooks;
}

/**
 * @internal What `jacsteer melbo` plugs into the training. The objective reaches the training as a
 * block operator of dimension d + 1 (one vector sv in, [loss, ...gradient] out): each evaluation is
 * one "block" that a state file logs and --resume replays, since the training is a deterministic
 * function of the answers it receives.
 */
export interface MelboHooks extends LongRunHooks<MelboRunInfo> {
  /** After every optimiser step: evaluations so far and its progress line (null: none this step). Default: log the line. */
  step?(evaluations: number, line: string | null): void;
}

/** What a MELBO run is, resolved (for state files): every input that changes its sequence of evaluations. */
export interface MelboRunInfo {
  prompts: number[][];
  sourceLayer: number;
  targetLayer: number;
  positions: Positions;
  numVectors: number;
  steps: number;
  radius: number;
  p: number;
  q: number;
  lr: number;
  weightDecay: number;
  seed: number;
  kernels: string;
  /** Objective evaluations the run makes (steps + 1 per vector). */
  evaluations: number;
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
  /** Evaluations of the objective this call computed (a resumed run's replayed ones are not counted). */
  evaluations: number;
  tokens: number[][];
  sourceLayer: number;
  targetLayer: number;
  positions: Positions;
  threads: number;
  /** How layers S+1..T were held. */
  weights: "resident" | "stream";
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
    const threads = gemm?.threads ?? 1;
    log(
      `jacsteer: ${name}: ${L} layers, hidden ${d}; S=${S} T=${T} positions ${describePositions(positions)}${describePositionWeights(positions) ? ` weights ${describePositionWeights(positions)}` : ""}; ` +
        `${prompts.length} prompt(s) of ${prompts.map((t) => t.length).join(", ")} tokens; threads ${threads}; kernels ${rt.build}`,
    );
    throwIfAborted(o.signal);
    // The steering engine's forward at each point and its batched VJP.
    const engine = await SteeringEngine.create(rt, cfg, o.model.tensors, prompts, { sourceLayer: S, targetLayer: T, positions }, { gemm, log, weights: o.weights ?? "auto" });
    let objective: EngineMelboObjective, radius: number, medianNorm: number, result: MelboResult;
    try {
      objective = new EngineMelboObjective(engine, { p, q });
      const norms = objective.sourceNorms();
      radius = o.radius ?? defaultRadius(norms);
      medianNorm = defaultRadius(norms) / DEFAULT_RADIUS_FACTOR;
      log(
        `jacsteer: radius R = ${radius.toPrecision(6)}${o.radius === undefined ? ` (default: ${DEFAULT_RADIUS_FACTOR} x the median layer-${S} norm ${medianNorm.toPrecision(6)}; set --radius to tune)` : ` (median layer-${S} norm ${medianNorm.toPrecision(6)})`}; ` +
          `p ${p}, q ${q}, lr ${lr}, ${steps} steps, ${n} vector(s)`,
      );
      const hooks = o.longRun;
      hooks?.begin?.({ prompts, sourceLayer: S, targetLayer: T, positions, numVectors: n, steps, radius, p, q, lr, weightDecay, seed, kernels: rt.build, evaluations: melboEvaluations(n, steps) });
      // The objective as a block operator on [sv] -> [[loss, ...gradient]] (MelboHooks says why);
      // whether the gradient is wanted is the training's request, passed beside the block.
      const obj = objective;
      let wantGradient = true;
      const evaluate: BlockOperator = {
        dim: d + 1,
        applyBlock: async ([sv]) => {
          const { loss, gradient } = await obj.evaluate({ sv: sv!, gradient: wantGradient });
          const w = new Float64Array(d + 1);
          w[0] = loss;
          if (gradient) w.set(gradient, 1);
          return [w];
        },
      };
      // Abort between evaluations, each the unit of work. An evaluation on this thread may never leave
      // the microtask queue, so with a signal a turn of the event loop first lets an abort from a timer
      // or an event arrive (as powerIter does before each block product).
      const signal = o.signal;
      const abortable: BlockOperator = signal ? { dim: d + 1, applyBlock: async (V) => (await turnEventLoop(), throwIfAborted(signal), evaluate.applyBlock(V)) } : evaluate;
      const op = hooks ? hooks.wrap(abortable) : abortable;
      let evaluations = 0;
      const every = Math.max(1, Math.round(steps / 10));
      const train = () =>
        trainMelboAsync(
          d,
          async (r) => {
            wantGradient = r.gradient;
            const [w] = await op.applyBlock([r.sv]);
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
              throwIfAborted(o.signal);
              o.onProgress?.({ vector, step, steps, loss });
              const line = step === 1 || step % every === 0 || step === steps ? `vector ${vector + 1}/${n} step ${step}/${steps}: loss ${loss.toPrecision(6)}` : null;
              if (hooks?.step) hooks.step(evaluations, line);
              else if (line !== null) log(line);
            },
          },
        );
      result = await (hooks ? hooks.run(train) : train());
    } finally {
      await engine.close();
    }
    if (engine.stream) {
      const st = engine.stream;
      log(`engine: streamed ${st.reads} layer reads (${(st.bytesRead / 1e9).toFixed(1)} GB); the steps waited ${st.waitSeconds.toFixed(1)} s for reads`);
    }
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
      threads,
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
      threads,
      weights: engine.weightPlan.mode,
      kernels: rt.build,
      seconds: rep.seconds(),
      metadata,
      warnings: rep.warnings,
    };
  });
}
