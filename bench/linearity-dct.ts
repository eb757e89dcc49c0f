// `linearity` and `dct` on the Qwen3-0.6B-shaped BF16 checkpoint (random weights, real shapes): one
// 32-token prompt, S 6, T 20, K 4, 2 threads, what the commands run (the engine's batched passes).
//   - linearity: 8 random unit directions x 12 radii (the default fractions of the median layer-S norm):
//     13 passes with all directions stacked. Baseline in the same run: the same ratios one direction per
//     pass (what a loop over vectors would run), timed on 2 directions and extrapolated to 8; its
//     ratios must equal the batched ones bit for bit (the pass does not depend on the batching).
//   - dct: defaults (m 8, tau 10, 30 calibration directions, target ratio 0.5): the whole run, by phase.
//     Baseline in the same run: one calibration pass and one OGI iteration done one vector per pass,
//     scaled to the run's pass counts.
// Writes bench/results/linearity-dct.md and .json.
//
//   node --experimental-wasm-relaxed-simd dist/bench/linearity-dct.js [--model DIR] [--threads N]
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SteeringEngine } from "../src/engine/steering-engine.js";
import { DCT_DEFAULTS, exponentialDct, seededInit } from "../src/dct/dct.js";
import { DEFAULT_RADIUS_FRACTIONS, linearity, unitVectors } from "../src/linearity/linearity.js";
import { DEFAULT_RADIUS_FACTOR, defaultRadius } from "../src/melbo/melbo.js";
import { gaussianStream } from "../src/linalg/dense.js";
import { openCheckpoint } from "../src/node/checkpoint.js";
import { enableRelaxedSimd } from "../src/node/relaxed-simd.js";
import { createNodeRuntime, packageRoot } from "../src/node/runtime.js";
import { createParallelGemm } from "../src/node/thread-pool.js";
import { machineInfo, machineLine, markdownTable } from "./harness.js";
import { ensureBenchCheckpoint } from "./make-checkpoint.js";

const S = 6, T = 20, K = 4, TOKENS = 32, VECTORS = 8, BASELINE_VECTORS = 2;

async function main(): Promise<void> {
  enableRelaxedSimd();
  const { values } = parseArgs({
    options: {
      model: { type: "string" }, threads: { type: "string" },
      // a smaller workload where the machine is busy: radius fractions, DCT iterations, calibration directions, a fixed DCT radius (no calibration)
      "radius-fracs": { type: "string" }, "dct-iterations": { type: "string" }, "dct-calibration": { type: "string" }, "dct-radius-frac": { type: "string" },
    },
  });
  const fracs = values["radius-fracs"] ? values["radius-fracs"].split(",").map(Number) : DEFAULT_RADIUS_FRACTIONS;
  const dctIterations = Number(values["dct-iterations"] ?? DCT_DEFAULTS.iterations);
  const dctCalibration = Number(values["dct-calibration"] ?? DCT_DEFAULTS.calibrationVectors);
  const dctRadiusFrac = values["dct-radius-frac"] === undefined ? undefined : Number(values["dct-radius-frac"]);
  const threads = Number(values.threads ?? 2);
  const machine = machineInfo();
  const dir = values.model ?? ensureBenchCheckpoint();
  const ckpt = openCheckpoint(dir);
  const g = gaussianStream(7);
  const prompt = Array.from({ length: TOKENS }, () => 1000 + Math.floor(Math.abs(g()) * 20000));
  const log = (l: string) => console.error(l);
  let t0 = performance.now();
  const rt = await createNodeRuntime();
  const gemm = await createParallelGemm(rt, threads);
  const engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, [prompt], { sourceLayer: S, targetLayer: T, positions: K }, { gemm, log });
  const setup = (performance.now() - t0) / 1000;
  const d = engine.inputDim;
  const median = defaultRadius(engine.sourceRowNorms()) / DEFAULT_RADIUS_FACTOR;
  const radii = fracs.map((f) => f * median);
  const { units } = unitVectors(Array.from({ length: VECTORS }, () => Float64Array.from({ length: d }, () => g())), "bench");

  // linearity, batched
  t0 = performance.now();
  const lin = await linearity(engine, units, { radii, target: 0.5, onPass: (e) => log(`linearity pass ${e.pass}/${e.passes}: ${e.seconds.toFixed(2)} s`) });
  const linSeconds = (performance.now() - t0) / 1000;
  // baseline: one direction per pass
  t0 = performance.now();
  const single: number[][] = [];
  for (let j = 0; j < BASELINE_VECTORS; j++) single.push((await linearity(engine, [units[j]!], { radii, target: 0.5 })).ratios[0]!);
  const linBaseSeconds = ((performance.now() - t0) / 1000) * (VECTORS / BASELINE_VECTORS);
  const bitwise = single.every((rs, j) => rs.every((x, k) => Object.is(x, lin.ratios[j]![k])));
  log(`linearity: batched ${linSeconds.toFixed(1)} s, one direction per pass ${linBaseSeconds.toFixed(1)} s (extrapolated), ratios bitwise equal: ${bitwise}`);

  // dct, defaults
  const phase = { calibration: 0, iterations: 0, final: 0, jv: 0 };
  t0 = performance.now();
  const res = await exponentialDct(engine, {
    numVectors: DCT_DEFAULTS.numVectors, iterations: dctIterations, targetRatio: DCT_DEFAULTS.targetRatio, calibrationVectors: dctCalibration,
    seed: 0, radiusStart: 0.1 * median, radius: dctRadiusFrac === undefined ? undefined : dctRadiusFrac * median,
    onProgress: (e) => {
      if (e.phase === "calibrate") phase.calibration += e.seconds;
      else if (e.phase === "iterate") phase.iterations += e.seconds;
      else if (e.phase === "final") phase.final += e.seconds;
      else phase.jv += e.seconds;
      log(`dct ${e.phase}: ${e.seconds.toFixed(2)} s`);
    },
  });
  const dctSeconds = (performance.now() - t0) / 1000;
  // baseline: one calibration pass and one iteration, one vector per pass
  const init = seededInit(0, d, engine.outputDim, DCT_DEFAULTS.numVectors, dctCalibration);
  t0 = performance.now();
  if (res.passes.calibration) for (const w of init.calibration) await engine.steered([w.map((x) => res.radius * x)]);
  const calPassSingle = (performance.now() - t0) / 1000;
  t0 = performance.now();
  for (let i = 0; i < init.V.length; i++) await engine.steered([Float32Array.from(init.V[i]!, (x) => res.radius * x)], [Float32Array.from(init.U[i]!)]);
  const iterSingle = (performance.now() - t0) / 1000;
  const calPassBatched = res.passes.calibration ? phase.calibration / res.passes.calibration : 0, iterBatched = phase.iterations / res.passes.iterations;
  const dctBaseSeconds = dctSeconds + res.passes.calibration * (calPassSingle - calPassBatched) + res.passes.iterations * (iterSingle - iterBatched);
  await engine.close();
  ckpt.close();

  const line = machineLine(machine);
  const rows = [
    [`linearity, ${VECTORS} directions x ${radii.length} radii (${radii.length + 1} passes)`, `${linSeconds.toFixed(1)} s`, `${linBaseSeconds.toFixed(1)} s (one direction per pass; ${BASELINE_VECTORS} timed, x${VECTORS / BASELINE_VECTORS})`, `${(linBaseSeconds / linSeconds).toFixed(2)}x`, `ratios bitwise equal: ${bitwise}`],
    [
      `dct, m ${DCT_DEFAULTS.numVectors}, tau ${dctIterations}, ${res.passes.calibration ? `${dctCalibration} calibration directions` : `radius given (${dctRadiusFrac} x median norm), no calibration`}`,
      `${dctSeconds.toFixed(1)} s (calibration J w ${phase.jv.toFixed(1)} s + ${phase.calibration.toFixed(1)} s in ${res.passes.calibration} passes, iterations ${phase.iterations.toFixed(1)} s, final ${phase.final.toFixed(1)} s)`,
      `${dctBaseSeconds.toFixed(1)} s (a calibration pass ${calPassSingle.toFixed(2)} s and an iteration ${iterSingle.toFixed(2)} s one vector per pass, vs ${calPassBatched.toFixed(2)} and ${iterBatched.toFixed(2)} s batched, scaled to the run's passes)`,
      `${(dctBaseSeconds / dctSeconds).toFixed(2)}x`,
      `R ${res.radius.toPrecision(5)} (${(res.radius / median).toPrecision(3)} x median norm ${median.toPrecision(4)}); objective ${res.objective[0]!.toPrecision(4)} -> ${res.objective.at(-1)!.toPrecision(4)}`,
    ],
  ];
  const md = [
    "# linearity and dct on the Qwen3-0.6B shape",
    "",
    `Machine: ${line}. **The machine was shared with other jobs during the run** (see the load average); the baseline ran in the same process right after the measured run.`,
    "",
    `Checkpoint: ${dir} (BF16, random weights, Qwen3-0.6B's shapes). One prompt of ${TOKENS} tokens, S ${S}, T ${T}, last ${K} positions, ${threads} threads, weights ${engine.weightPlan.mode}; engine setup ${setup.toFixed(1)} s (not in the times below).`,
    "",
    markdownTable(["workload", "jacsteer (batched passes)", "baseline in the same run", "speed-up", "check"], rows),
    "",
    `Linearity crossing radii (ratio 0.5), as fractions of the median layer-${S} norm: ${lin.radiusAtTarget.map((r) => (r === null ? "–" : (r / median).toFixed(3))).join(", ")}.`,
    "",
    "Regenerate: `npm run build && node --experimental-wasm-relaxed-simd dist/bench/linearity-dct.js --model DIR` (DIR: the 0.6B-shaped checkpoint bench/make-checkpoint.ts writes).",
    "",
  ].join("\n");
  const outDir = join(packageRoot(), "bench", "results");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "linearity-dct.md"), md);
  writeFileSync(
    join(outDir, "linearity-dct.json"),
    JSON.stringify({ machine, setup, linearity: { seconds: linSeconds, baseline_seconds: linBaseSeconds, bitwise, radii, ratios: lin.ratios, radius_at_target: lin.radiusAtTarget }, dct: { seconds: dctSeconds, baseline_seconds: dctBaseSeconds, phase, passes: res.passes, radius: res.radius, objective: res.objective, calibration: res.calibration, cal_pass_single: calPassSingle, iter_single: iterSingle }, median_source_norm: median }, null, 2) + "\n",
  );
  process.stdout.write(md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
