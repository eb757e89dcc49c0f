// The layer-pair atlas against running `power-iter` and `kl` per pair, on the Qwen3-0.6B-shaped BF16
// checkpoint (random weights, real Qwen3 tokenizer; bench/make-checkpoint.ts): k 8, --tol 1e-2, 4
// prompts, KL at +-0.35 x ||h_S|| at the last position, 2 threads. Both ways run the same subset in
// this process's children, one after the other, wall time from spawn to exit:
//   - atlas: one `jacsteer atlas --solver auto` over whole sources (every target of each: what the
//     whole-Jacobian solver shares is a source's JVPs, so a subset must keep sources whole);
//   - per pair: `jacsteer power-iter --method lanczos --out X` then `jacsteer kl --vectors X`.
// The full atlas (378 pairs; hours) is extrapolated from constants measured in this run (printed with
// the arithmetic): per pair, power-iter + kl as a + b (T - S); the atlas source by source with the
// auto rule, its Lanczos pairs as a + b (T - S), its sweeps at the measured seconds per JVP column and
// layer plus each target's own work as a + b (T - S), its KL as a + b (L - 1 - S), and its setup.
// Writes bench/results/atlas.md and .json.
//
//   node --experimental-wasm-relaxed-simd dist/bench/atlas.js [--model DIR] [--threads N] [--sources 8,22]
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { packageRoot } from "../src/node/runtime.js";
import { leastSquares } from "../src/evaluation/ab.js";
import { atlasPairs } from "../src/atlas/atlas.js";
import { sweepCost } from "../src/atlas/full-jacobian.js";
import type { AtlasFile } from "../src/cli/atlas.js";
import { machineInfo, machineLine, markdownTable } from "./harness.js";
import { benchCacheDir } from "./make-checkpoint.js";

const PROMPTS = [
  "The cat sat on the mat and looked out of the window at the rain.",
  "Please write a short poem about the sea and the people who sail it.",
  "What is the capital of France, and why did it become the capital?",
  "I think the best way to learn a language is to speak it every day.",
];
const { values } = parseArgs({ options: { model: { type: "string" }, threads: { type: "string" }, sources: { type: "string" } } });
// The subset: one source where auto takes the whole Jacobian (8: 19 targets), one where it keeps
// Lanczos (22: 5 targets); spans 1 to 19 layers for the fits.
const SOURCES = values.sources === undefined ? [8, 22] : values.sources.split(",").map(Number);
const NUM_LAYERS = 28;
const TARGETS = Array.from({ length: NUM_LAYERS - 1 - Math.min(...SOURCES) }, (_, i) => Math.min(...SOURCES) + 1 + i);
const model = values.model ?? join(benchCacheDir(), "qwen3-0.6b-shaped-bf16");
const threads = values.threads ?? "2";
const BIN = join(packageRoot(), "bin", "jacsteer.js");
const promptArgs = PROMPTS.flatMap((p) => ["--prompt", p]);
const common = ["--model", model, ...promptArgs, "--positions", "4", "--num-vectors", "8", "--threads", threads, "--quiet"];

/** CPU seconds (user + system) of every child, through /usr/bin/time: on a shared machine the wall time
 *  mostly measures the other processes, the CPU time what this one did. */
const cpu: number[] = [];
function run(args: string[]): number {
  const t0 = performance.now();
  const timeFile = join(work, `time-${cpu.length}.txt`);
  const r = spawnSync("/usr/bin/time", ["-f", "%U %S", "-o", timeFile, process.execPath, BIN, ...args], { encoding: "utf8", maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`jacsteer ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  const [user, sys] = readFileSync(timeFile, "utf8").trim().split(/\s+/).map(Number);
  cpu.push(user + sys);
  return (performance.now() - t0) / 1000;
}
const lastCpu = () => cpu[cpu.length - 1];

const machine = machineInfo();
const work = mkdtempSync(join(tmpdir(), "jacsteer-bench-atlas-"));
process.on("exit", () => rmSync(work, { recursive: true, force: true }));
try {
  const pairs = atlasPairs(SOURCES, TARGETS);
  console.error(`atlas bench: ${pairs.length} pairs, model ${model}`);
  const atlasDir = join(work, "atlas");
  const atlasWall = run(["atlas", ...common, "--sources", SOURCES.join(","), "--targets", `${TARGETS[0]}..${TARGETS.at(-1)}`, "--tol", "1e-2", "--scale-frac", "0.35", "--solver", "auto", "--out-dir", atlasDir]);
  const merged: AtlasFile = JSON.parse(readFileSync(join(atlasDir, "atlas.json"), "utf8"));
  const atlasPair = merged.pairs.map((p) => p.seconds.solve + p.seconds.kl);
  const atlasCpu = lastCpu();
  const atlasSetup = atlasWall - atlasPair.reduce((a, b) => a + b, 0);
  console.error(`atlas: ${atlasWall.toFixed(1)} s wall (setup ${atlasSetup.toFixed(1)} s)`);
  const perPair = pairs.map((p) => {
    const out = join(work, `S${p.source}-T${p.target}.safetensors`);
    const pi = run(["power-iter", ...common, "--source-layer", String(p.source), "--target-layer", String(p.target), "--method", "lanczos", "--tol", "1e-2", "--out", out]);
    const kl = run(["kl", "--model", model, ...promptArgs, "--vectors", out, "--scale-frac", "0.35", "--threads", threads, "--quiet"]);
    const cpuPairs = cpu[cpu.length - 2] + cpu[cpu.length - 1];
    console.error(`per pair S ${p.source} T ${p.target}: power-iter ${pi.toFixed(1)} s + kl ${kl.toFixed(1)} s (CPU ${cpuPairs.toFixed(1)} s)`);
    return { pi, kl, cpu: cpuPairs };
  });

  // ---- Extrapolation to every pair of the 28-layer model, from constants of this run ----
  const L = NUM_LAYERS, d = 1024, k = 8;
  const all = atlasPairs(Array.from({ length: L - 1 }, (_, i) => i), Array.from({ length: L - 1 }, (_, i) => i + 1));
  const span = (p: { source: number; target: number }) => p.target - p.source;
  const sumSpan = all.reduce((s, p) => s + span(p), 0);
  const extrap = (f: { slope: number | null; intercept: number | null }) => all.length * f.intercept! + f.slope! * sumSpan;
  // Per pair: power-iter + kl processes.
  const fitBase = leastSquares(pairs.map(span), perPair.map((x) => x.pi + x.kl));
  const baseFull = extrap(fitBase);
  // Atlas: Lanczos pairs' solve, whole-Jacobian pairs' own work and sweep columns, KL.
  const lan = merged.pairs.filter((p) => p.solver === "lanczos"), jac = merged.pairs.filter((p) => p.solver === "jacobian");
  const fitLan = leastSquares(lan.map(span), lan.map((p) => p.seconds.solve));
  const meanProducts = lan.reduce((s, p) => s + p.products, 0) / lan.length;
  const fitOwn = leastSquares(jac.map(span), jac.map((p) => p.seconds.solve - (p.seconds.sweep ?? 0)));
  // One sweep per jacobian source (0.6B: every target fits the default budget): columns x layers.
  const jacSources = [...new Set(jac.map((p) => p.source))];
  const columnLayers = jacSources.reduce((s, S) => s + d * (Math.max(...jac.filter((p) => p.source === S).map((p) => p.target)) - S), 0);
  const perColumnLayer = jac.reduce((s, p) => s + (p.seconds.sweep ?? 0), 0) / Math.max(1, columnLayers);
  const fitKl = leastSquares(merged.pairs.map((p) => L - 1 - p.source), merged.pairs.map((p) => p.seconds.kl));
  // Kept images per target: d columns of outputDim = prompts x K x d floats (the CLI's engine.outputDim).
  const bytesPerTarget = 4 * d * (PROMPTS.length * 4 * d);
  let atlasFull = atlasSetup;
  const jacobianSources: number[] = [];
  for (let S = 0; S <= L - 2; S++) {
    const targets = Array.from({ length: L - 1 - S }, (_, i) => S + 1 + i);
    let t = fitLan.intercept! + fitLan.slope! * 1; // the first pair, by Lanczos
    const rest = targets.slice(1);
    const cost = sweepCost(S, rest, d, k, bytesPerTarget, meanProducts);
    if (rest.length && cost.jacobian < cost.lanczos) {
      t += perColumnLayer * d * (L - 1 - S) + rest.reduce((s, T) => s + fitOwn.intercept! + fitOwn.slope! * (T - S), 0);
      jacobianSources.push(S);
    } else {
      t += rest.reduce((s, T) => s + fitLan.intercept! + fitLan.slope! * (T - S), 0);
    }
    atlasFull += t + targets.length * (fitKl.intercept! + fitKl.slope! * (L - 1 - S));
  }
  const subsetAtlas = atlasWall, subsetBase = perPair.reduce((s, x) => s + x.pi + x.kl, 0);
  const subsetBaseCpu = perPair.reduce((s, x) => s + x.cpu, 0);
  const f3 = (x: number | null) => x!.toFixed(3);

  const rows = pairs.map((p, i) => [`S ${p.source}, T ${p.target}`, merged.pairs[i].solver, merged.pairs[i].solver === "jacobian" ? `${d} JVPs (shared)` : String(merged.pairs[i].products), Math.max(...merged.pairs[i].relative_residuals).toExponential(1), merged.pairs[i].seconds.solve.toFixed(1), merged.pairs[i].seconds.kl.toFixed(1), perPair[i].pi.toFixed(1), perPair[i].kl.toFixed(1), ((perPair[i].pi + perPair[i].kl) / atlasPair[i]).toFixed(2) + "x"]);
  const md = [
    "# Layer-pair atlas against power-iter + kl per pair",
    "",
    `Machine: ${machineLine(machine)}. Both ways ran in this one bench run, one after the other.`,
    "",
    `Model: Qwen3-0.6B-shaped BF16 checkpoint (random weights, 28 layers, hidden 1024), 4 English prompts (the real Qwen3 tokenizer), K 4, top 8, --tol 1e-2, KL at +-0.35 x ||h_S|| at the last position, ${threads} threads; atlas --solver auto.`,
    "",
    `Subset: ${pairs.length} pairs, every target of S ${SOURCES.join(" and ")}: atlas ${subsetAtlas.toFixed(1)} s wall (setup ${atlasSetup.toFixed(1)} s: weights, forward at sv0, the KL prompts' unsteered pass; then the pairs), per pair ${subsetBase.toFixed(1)} s in all: **${(subsetBase / subsetAtlas).toFixed(2)}x**.`,
    "",
    `CPU seconds (user + system of the child processes): atlas ${atlasCpu.toFixed(1)} s, per pair ${subsetBaseCpu.toFixed(1)} s: **${(subsetBaseCpu / atlasCpu).toFixed(2)}x**.`,
    "",
    markdownTable(["pair", "atlas solver", "products", "largest relative residual", "atlas solve s", "atlas KL s", "power-iter s (process)", "kl s (process)", "per pair / atlas pair"], rows),
    "",
    "## Extrapolation to the full atlas (378 pairs)",
    "",
    `Constants of this run (least squares over the subset's pairs; sum of T - S over all 378 pairs = ${sumSpan}):`,
    "",
    `- per pair, power-iter + kl: a = ${f3(fitBase.intercept)} s, b = ${f3(fitBase.slope)} s per layer of T - S (R^2 ${fitBase.r2?.toFixed(2)}): 378 x ${f3(fitBase.intercept)} + ${f3(fitBase.slope)} x ${sumSpan} = **${(baseFull / 60).toFixed(1)} min**`,
    `- atlas, Lanczos pairs' solve: a = ${f3(fitLan.intercept)} s, b = ${f3(fitLan.slope)} s per layer (R^2 ${fitLan.r2?.toFixed(2)}; ${meanProducts.toFixed(0)} products per pair on average, the auto rule's input)`,
    `- atlas, whole-Jacobian sweeps: ${(perColumnLayer * 1000).toFixed(2)} ms per JVP column and layer; each target's own work (Gram matrix, its top-k, the certificate): a = ${f3(fitOwn.intercept)} s, b = ${f3(fitOwn.slope)} s per layer (R^2 ${fitOwn.r2?.toFixed(2)})`,
    `- atlas, KL per pair: a = ${f3(fitKl.intercept)} s, b = ${f3(fitKl.slope)} s per layer of L - 1 - S`,
    `- the auto rule on every source: the whole Jacobian for S ${jacobianSources.join(", ") || "none"} (${jacobianSources.length} sources), Lanczos for the rest`,
    `- atlas: setup ${atlasSetup.toFixed(1)} s + the sources = **${(atlasFull / 60).toFixed(1)} min**`,
    `- ratio: **${(baseFull / atlasFull).toFixed(2)}x**; goal: atlas <= 120 min and >= 2x.`,
    "",
    "This is an extrapolation from the subset, not a measured full run.",
    "",
  ].join("\n");
  const json = { machine, model, threads: Number(threads), sources: SOURCES, pairs: pairs.map((p, i) => ({ ...p, atlas: merged.pairs[i], per_pair: perPair[i] })), atlas_wall: atlasWall, atlas_cpu: atlasCpu, per_pair_cpu: subsetBaseCpu, atlas_setup: atlasSetup, subset_ratio: subsetBase / subsetAtlas, fit_per_pair: fitBase, fit_lanczos: fitLan, mean_products: meanProducts, fit_jacobian_own: fitOwn, seconds_per_column_layer: perColumnLayer, fit_kl: fitKl, jacobian_sources: jacobianSources, sum_span: sumSpan, full_atlas_seconds: atlasFull, full_per_pair_seconds: baseFull };
  const dir = join(packageRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "atlas.md"), md);
  writeFileSync(join(dir, "atlas.json"), JSON.stringify(json, null, 2) + "\n");
  process.stdout.write(md);
} finally {
  rmSync(work, { recursive: true, force: true });
}
