// The layer-pair atlas against running `power-iter` and `kl` per pair, on the Qwen3-0.6B-shaped BF16
// checkpoint (random weights, real Qwen3 tokenizer; bench/make-checkpoint.ts): k 8, --tol 1e-2, 4
// prompts, KL at +-0.35 x ||h_S|| at the last position, 2 threads. Both ways run the same subset of
// pairs in this process's children, one after the other, wall time from spawn to exit:
//   - atlas: one `jacsteer atlas` over the subset (its pairs share the forward, weights, KL baseline);
//   - per pair: `jacsteer power-iter --method lanczos --out X` then `jacsteer kl --vectors X`.
// The full atlas (all 378 pairs) is too long to run here on a shared machine, so both are
// extrapolated: per-pair times are fitted as a + b (T - S) by least squares over the subset (the
// products run T - S layers; setup and KL do not depend on T), then summed over all pairs; the atlas
// adds its one-time setup (its wall time minus the sum of its pairs' times). The arithmetic is
// printed in the result. Writes bench/results/atlas.md and .json.
//
//   node --experimental-wasm-relaxed-simd dist/bench/atlas.js [--model DIR] [--threads N] [--sources 6,13] [--targets 14,20]
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { packageRoot } from "../src/node/runtime.js";
import { leastSquares } from "../src/evaluation/ab.js";
import { atlasPairs } from "../src/atlas/atlas.js";
import type { AtlasFile } from "../src/cli/atlas.js";
import { machineInfo, machineLine, markdownTable } from "./harness.js";
import { benchCacheDir } from "./make-checkpoint.js";

const PROMPTS = [
  "The cat sat on the mat and looked out of the window at the rain.",
  "Please write a short poem about the sea and the people who sail it.",
  "What is the capital of France, and why did it become the capital?",
  "I think the best way to learn a language is to speak it every day.",
];
const { values } = parseArgs({ options: { model: { type: "string" }, threads: { type: "string" }, sources: { type: "string" }, targets: { type: "string" } } });
const list = (s: string | undefined, fallback: number[]) => (s === undefined ? fallback : s.split(",").map(Number));
// The subset: its mean T - S (7.5) near the full atlas's (9.7), spans from 1 to 14 layers for the fit.
const SOURCES = list(values.sources, [6, 13]), TARGETS = list(values.targets, [14, 20]);
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
  const atlasWall = run(["atlas", ...common, "--sources", SOURCES.join(","), "--targets", TARGETS.join(","), "--tol", "1e-2", "--scale-frac", "0.35", "--out-dir", atlasDir]);
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

  // Extrapolation to every pair of the 28-layer model.
  const L = 28;
  const all = atlasPairs(Array.from({ length: L - 1 }, (_, i) => i), Array.from({ length: L - 1 }, (_, i) => i + 1));
  const span = (p: { source: number; target: number }) => p.target - p.source;
  const sumSpan = all.reduce((s, p) => s + span(p), 0);
  const fitAtlas = leastSquares(pairs.map(span), atlasPair);
  const fitBase = leastSquares(pairs.map(span), perPair.map((x) => x.pi + x.kl));
  const extrap = (f: { slope: number | null; intercept: number | null }) => all.length * f.intercept! + f.slope! * sumSpan;
  const atlasFull = atlasSetup + extrap(fitAtlas);
  const baseFull = extrap(fitBase);
  const subsetAtlas = atlasWall, subsetBase = perPair.reduce((s, x) => s + x.pi + x.kl, 0);
  const subsetBaseCpu = perPair.reduce((s, x) => s + x.cpu, 0);

  const rows = pairs.map((p, i) => [`S ${p.source}, T ${p.target}`, String(merged.pairs[i].products), merged.pairs[i].converged ? "yes" : "no", merged.pairs[i].seconds.solve.toFixed(1), merged.pairs[i].seconds.kl.toFixed(1), perPair[i].pi.toFixed(1), perPair[i].kl.toFixed(1), ((perPair[i].pi + perPair[i].kl) / atlasPair[i]).toFixed(2) + "x"]);
  const md = [
    "# Layer-pair atlas against power-iter + kl per pair",
    "",
    `Machine: ${machineLine(machine)}. **Shared machine** (other engineers' builds and tests ran at the same time): absolute times are inflated and noisy; both ways ran in this one bench run, one after the other.`,
    "",
    `Model: Qwen3-0.6B-shaped BF16 checkpoint (random weights, 28 layers, hidden 1024), 4 English prompts (the real Qwen3 tokenizer), K 4, top 8, block Lanczos to --tol 1e-2, KL at +-0.35 x ||h_S|| at the last position, ${threads} threads.`,
    "",
    `Subset: ${pairs.length} pairs (S in ${SOURCES.join(", ")}; T in ${TARGETS.join(", ")}): atlas ${subsetAtlas.toFixed(1)} s wall (setup ${atlasSetup.toFixed(1)} s: weights, forward at sv0, the KL prompts' unsteered pass; then the pairs), per pair ${subsetBase.toFixed(1)} s in all: **${(subsetBase / subsetAtlas).toFixed(2)}x**.`,
    "",
    `CPU seconds (user + system of the child processes, which the other work on the machine does not inflate): atlas ${atlasCpu.toFixed(1)} s, per pair ${subsetBaseCpu.toFixed(1)} s: **${(subsetBaseCpu / atlasCpu).toFixed(2)}x**.`,
    "",
    markdownTable(["pair", "products", "converged", "atlas solve s", "atlas KL s", "power-iter s (process)", "kl s (process)", "per pair / atlas pair"], rows),
    "",
    "## Extrapolation to the full atlas (378 pairs)",
    "",
    `Per-pair time fitted as a + b (T - S) over the subset (least squares); the sum over all 378 pairs is 378 a + b x ${sumSpan} (the sum of T - S over all pairs).`,
    "",
    `- atlas: a = ${fitAtlas.intercept!.toFixed(3)} s, b = ${fitAtlas.slope!.toFixed(3)} s per layer (R^2 ${fitAtlas.r2?.toFixed(2)}): ${atlasSetup.toFixed(1)} + 378 x ${fitAtlas.intercept!.toFixed(3)} + ${fitAtlas.slope!.toFixed(3)} x ${sumSpan} = **${(atlasFull / 60).toFixed(1)} min**`,
    `- power-iter + kl per pair: a = ${fitBase.intercept!.toFixed(3)} s, b = ${fitBase.slope!.toFixed(3)} s per layer (R^2 ${fitBase.r2?.toFixed(2)}): 378 x ${fitBase.intercept!.toFixed(3)} + ${fitBase.slope!.toFixed(3)} x ${sumSpan} = **${(baseFull / 60).toFixed(1)} min**`,
    `- ratio: **${(baseFull / atlasFull).toFixed(2)}x**; goal: atlas <= 120 min and >= 2x.`,
    "",
    "This is an extrapolation from the subset, not a measured full run.",
    "",
  ].join("\n");
  const json = { machine, model, threads: Number(threads), pairs: pairs.map((p, i) => ({ ...p, atlas: merged.pairs[i], per_pair: perPair[i] })), atlas_wall: atlasWall, atlas_cpu: atlasCpu, per_pair_cpu: subsetBaseCpu, atlas_setup: atlasSetup, subset_ratio: subsetBase / subsetAtlas, fit_atlas: fitAtlas, fit_per_pair: fitBase, sum_span: sumSpan, full_atlas_seconds: atlasFull, full_per_pair_seconds: baseFull };
  const dir = join(packageRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "atlas.md"), md);
  writeFileSync(join(dir, "atlas.json"), JSON.stringify(json, null, 2) + "\n");
  process.stdout.write(md);
} finally {
  rmSync(work, { recursive: true, force: true });
}
