// `jacsteer dct`: exponential Deep Causal Transcoder vectors (src/dct/dct.ts) on the batched engine,
// written as a vector file (method "dct") with the calibrated radius and the objective history.
import { createHash } from "node:crypto";
import { intFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { checkOutPath, log, warn, warnings } from "./session.js";
import { ENGINE_SESSION_OPTIONS, engineSessionHelp, openEngineSession, passEta } from "./engine-session.js";
import { encodeVectorFile } from "../io/vector-file.js";
import { modelConfigKey } from "../io/run-identity.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { describePositions, describePositionWeights } from "../jacobian/positions.js";
import { DCT_DEFAULTS, MAX_CALIBRATION_EVALS, exponentialDct } from "../dct/dct.js";
import { DEFAULT_RADIUS_FACTOR, defaultRadius } from "../melbo/melbo.js";
import { positiveNumber } from "./melbo.js";
import { formatDuration } from "../solvers/eta.js";

/** The bracketing starts at this fraction of the median layer-S norm. */
export const DCT_RADIUS_START_FRACTION = 0.1;

export const DCT_HELP = `jacsteer dct: exponential Deep Causal Transcoder (Mack 2024) steering vectors: m unit directions v_i
(and output directions u_i) maximising F = (1/m) sum_i <u_i, Delta(R v_i)>, Delta(theta) = target(theta) - target(0),
by Orthogonalised Gradient Iteration (each iteration: V orthonormalised, one batched pass at the points R v_i with
the VJP there, u_i <- Delta(R v_i) normalised, v_i <- J(R v_i)^T u_i normalised). R is calibrated first so that
sqrt(mean_j ||Delta(R w_j) - R J w_j||^2 / ||R J w_j||^2) = the target ratio over random unit directions w_j.
The target and J are power-iter's (layer T's output at the target positions of every prompt).

  --num-vectors M          how many directions (default ${DCT_DEFAULTS.numVectors})
  --iterations TAU         OGI iterations (default ${DCT_DEFAULTS.iterations}, as Mack's code)
  --target-ratio X         the calibration's target ratio (default ${DCT_DEFAULTS.targetRatio}, as Mack's code)
  --calibration-vectors N  random directions the ratio is averaged over (default ${DCT_DEFAULTS.calibrationVectors}, as Mack's code)
  --radius R               skip the calibration and use this radius
  --radius-start R         where the calibration's bracketing starts (default ${DCT_RADIUS_START_FRACTION} x the median norm of the
                           layer-S output over all positions of the prompts; it doubles or halves from there)
  --seed N                 calibration directions and starting factors (default 0)
  --out FILE.safetensors   the vectors (rows sorted by their final term <u_i, Delta(R v_i)>, largest first) and
                           run metadata (method "dct", radius, objective history, terms)
${engineSessionHelp(false)}`;

const OPTIONS: Options = {
  ...ENGINE_SESSION_OPTIONS,
  "num-vectors": { type: "string" },
  iterations: { type: "string" },
  "target-ratio": { type: "string" },
  "calibration-vectors": { type: "string" },
  radius: { type: "string" },
  "radius-start": { type: "string" },
  seed: { type: "string" },
  out: { type: "string" },
};

export async function dct(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(DCT_HELP);
    return 0;
  }
  const m = intFlag(f, "num-vectors", DCT_DEFAULTS.numVectors, 1)!;
  const iterations = intFlag(f, "iterations", DCT_DEFAULTS.iterations, 1)!;
  const nCal = intFlag(f, "calibration-vectors", DCT_DEFAULTS.calibrationVectors, 1)!;
  const target = positiveNumber(f, "target-ratio", undefined) ?? DCT_DEFAULTS.targetRatio;
  const radiusFlag = positiveNumber(f, "radius", undefined);
  const startFlag = positiveNumber(f, "radius-start", undefined);
  if (radiusFlag !== undefined && startFlag !== undefined) throw new UsageError("--radius skips the calibration; --radius-start has nothing to start");
  if (radiusFlag !== undefined && (f["target-ratio"] !== undefined || f["calibration-vectors"] !== undefined)) throw new UsageError("--radius skips the calibration: --target-ratio and --calibration-vectors do not apply");
  const seed = intFlag(f, "seed", 0, 0)!;
  const out = f.out as string | undefined;
  checkOutPath(out);

  const started = performance.now();
  const session = await openEngineSession(f);
  try {
    const { engine, S, T, positions, prompts, ckpt, rt } = session;
    const d = engine.inputDim;
    if (m > d) throw new UsageError(`--num-vectors ${m} exceeds the hidden size ${d}: that many orthogonal vectors do not exist`);
    const medianNorm = defaultRadius(engine.sourceRowNorms()) / DEFAULT_RADIUS_FACTOR;
    const radiusStart = startFlag ?? DCT_RADIUS_START_FRACTION * medianNorm;
    log(
      `dct: ${m} vector(s), ${iterations} iterations; ` +
        (radiusFlag !== undefined ? `radius ${radiusFlag} (given)` : `radius calibrated to ratio ${target} over ${nCal} random directions, from R = ${radiusStart.toPrecision(5)} (median layer-${S} norm ${medianNorm.toPrecision(5)})`),
    );
    // ETA: the calibration's evaluations are not known in advance (at most MAX_CALIBRATION_EVALS);
    // the iterations are, and each costs about the same.
    const iterEta = passEta(iterations + 1);
    let calSeconds = 0;
    const result = await exponentialDct(engine, {
      numVectors: m, iterations, targetRatio: target, calibrationVectors: nCal, seed, radius: radiusFlag, radiusStart,
      onProgress: (e) => {
        if (e.phase === "jv") log(`dct: calibration: J w for ${nCal} directions: ${e.seconds.toFixed(2)} s`);
        else if (e.phase === "calibrate") {
          calSeconds += e.seconds;
          log(
            `dct: calibration pass ${e.evaluation} (${e.bracketed ? "root finding" : "bracketing"}): R ${e.radius.toPrecision(6)} ratio ${e.ratio.toPrecision(6)}: ${e.seconds.toFixed(2)} s; ` +
              `ETA unknown (at most ${formatDuration((MAX_CALIBRATION_EVALS - e.evaluation) * (calSeconds / e.evaluation))} more calibration, then ${iterations} iterations)`,
          );
        } else if (e.phase === "iterate") log(`dct: iteration ${e.iteration}/${e.iterations}: objective ${e.objective.toPrecision(6)}: ${e.seconds.toFixed(2)} s, ${iterEta(e.seconds)}`);
        else log(`dct: final objective ${e.objective.toPrecision(6)}: ${e.seconds.toFixed(2)} s`);
      },
    });
    const seconds = (performance.now() - started) / 1000;
    if (result.calibration) log(`dct: calibrated R = ${result.radius.toPrecision(6)} (ratio ${result.calibration.ratio.toPrecision(6)}, ${result.calibration.evaluations.length} passes)`);
    const hist = result.objective;
    const lastChange = hist.length > 1 ? Math.abs(hist.at(-1)! - hist.at(-2)!) / Math.max(Math.abs(hist.at(-1)!), 1e-300) : 0;
    if (lastChange > 0.01) warn(`the DCT objective still changed ${(100 * lastChange).toFixed(1)}% at the last iteration (OGI is a fixed-point iteration and may oscillate): raise --iterations`);
    result.terms.forEach((t, i) => {
      if (!(t > 0)) warn(`dct vector ${i}: its term <u, Delta(R v)> is ${t.toPrecision(3)} (not positive): the iteration has not settled for it`);
    });

    const vectors = result.vectors.map((v) => Float32Array.from(v));
    const metadata: Record<string, string> = {
      method: "dct",
      dct_variant: "exponential",
      model: ckpt.name,
      model_path: ckpt.dir,
      model_config: modelConfigKey(ckpt.config),
      source_layer: String(S),
      target_layer: String(T),
      positions: describePositions(positions),
      position_weights: describePositionWeights(positions),
      seed: String(seed),
      num_vectors: String(m),
      iterations: String(iterations),
      radius: String(result.radius),
      radius_calibrated: String(!!result.calibration),
      target_ratio: result.calibration ? String(target) : "",
      calibration_vectors: result.calibration ? String(nCal) : "",
      calibration: result.calibration ? JSON.stringify(result.calibration.evaluations) : "",
      objective: JSON.stringify(hist),
      terms: JSON.stringify(result.terms),
      median_source_norm: String(medianNorm),
      tokens: JSON.stringify(prompts),
      tokens_sha256: createHash("sha256").update(JSON.stringify(prompts)).digest("hex"),
      chat: String(!!f.chat),
      dtype: "float32",
      implementation: "jacsteer",
      kernels: rt.build,
    };
    if (out !== undefined) {
      writeFileAtomic(out, encodeVectorFile({ vectors, metadata }));
      log(`jacsteer: wrote ${out}`);
    }
    if (f.json) {
      const summary = {
        radius: result.radius,
        radius_calibrated: !!result.calibration,
        target_ratio: result.calibration ? target : null,
        calibration: result.calibration ? { ratio: result.calibration.ratio, evaluations: result.calibration.evaluations, vectors: nCal } : null,
        objective: hist,
        terms: result.terms,
        order: result.order,
        num_vectors: m,
        iterations,
        seed,
        passes: result.passes,
        median_source_norm: medianNorm,
        seconds,
        threads: session.threads,
        tokens: prompts,
        source_layer: S,
        target_layer: T,
        positions: typeof positions === "number" ? positions : describePositions(positions),
        position_weights: describePositionWeights(positions) || null,
        model: ckpt.name,
        kernels: rt.build,
        out: out ?? null,
        warnings: warnings(),
      };
      process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
    } else {
      const lines = [`  i  term <u_i, Delta(R v_i)>`];
      result.terms.forEach((t, i) => lines.push(`${String(i).padStart(3)}  ${t.toPrecision(6)}`));
      lines.push(`objective: ${hist.map((x) => x.toPrecision(5)).join(" ")}`);
      lines.push(`${m} vector(s), radius ${result.radius.toPrecision(6)}${result.calibration ? ` (calibrated to ratio ${target})` : ""}, ${iterations} iterations, ${seconds.toFixed(2)} s`);
      process.stdout.write(lines.join("\n") + "\n");
    }
    return 0;
  } finally {
    await session.close();
  }
}
