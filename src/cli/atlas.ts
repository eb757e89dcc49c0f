// `jacsteer atlas`: every layer pair's top singular vectors and their both-sign KL (src/atlas/atlas.ts
// computes); one vector file per pair written atomically as it finishes, so an interrupted atlas
// continues where it stopped; a merged atlas.json after every pair.
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { intFlag, numberFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { defaultModelDir, log, promptFlags, PROMPT_OPTIONS, resolvePrompts, warn, warnings } from "./session.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag } from "./weights-flag.js";
import { DEFAULT_SCALE_FRAC, klScalesFlag } from "./kl.js";
import { openCheckpoint } from "../node/checkpoint.js";
import { openSafetensorsFile, writeFileAtomic } from "../node/safetensors-file.js";
import { createNodeRuntime } from "../node/runtime.js";
import { createParallelGemm } from "../node/thread-pool.js";
import { decodeVectorFile, encodeVectorFile } from "../io/vector-file.js";
import { modelConfigKey } from "../io/run-identity.js";
import { checkTokens } from "../model/qwen3.js";
import { ForwardModel } from "../engine/forward.js";
import { SteeringEngine } from "../engine/steering-engine.js";
import { borrowGemm } from "../engine/parallel-gemm.js";
import { KlEvaluator } from "../steering-eval/kl.js";
import { WorkProgress } from "../steering-eval/progress.js";
import { atlasPairs, lanczosPair, pairWork, scoreAtlasPair, type AtlasPair, type AtlasPairResult } from "../atlas/atlas.js";
import { jacobianSweeps, solveSweep, sweepCost } from "../atlas/full-jacobian.js";
import type { SolveResult } from "../solvers/common.js";

export const ATLAS_TOL = 1e-2;

export const ATLAS_HELP = `jacsteer atlas: top singular vectors and their both-sign KL for every layer pair (S, T), S < T

  --model DIR              checkpoint directory (default: the bundled tiny model)
  --prompt TEXT            a prompt (repeatable); --prompts FILE; --tokens 1,2,3 (repeatable); --chat,
                           --system TEXT: as for power-iter. The same prompts give the Jacobian and the KL
  --out-dir DIR            where the results go (created if missing; required):
                             pair-S06-T20.safetensors  one vector file per pair (vectors, singular values,
                                                       the pair's KL in its metadata), written as it finishes
                             atlas.json                every finished pair, rewritten after each one
  --sources A..B|LIST      source layers (default: all, 0..L-2)
  --targets A..B|LIST      target layers (default: all, 1..L-1); pairs with S >= T are skipped
  --positions K            Jacobian target: the last K positions (default 4)
  --num-vectors N          singular vectors per pair (default 8)
  --tol E                  a pair is done when every ||J^T J v - sigma^2 v|| <= E sigma_1^2 (default ${ATLAS_TOL})
  --max-iters I            block applications per pair at most (default: unlimited)
  --solver auto|lanczos|jacobian
                           how a source's pairs are solved (default auto): lanczos, block Lanczos on each
                           pair; jacobian, the source's whole Jacobian for all its targets at once (d JVPs
                           from S, each passing every target; exact top-k, certified by the pair's own
                           residual); auto, the first pair of each source by Lanczos, the rest by the
                           whole Jacobian when that is cheaper at the products the first one took
  --seed N                 random start of every pair (default 0)
  --scale-frac F           KL at +-F x ||h_S|| at each prompt's last token (default ${DEFAULT_SCALE_FRAC}); or
  --scales C               at +-C (absolute)
  --kl-positions K         KL: the mean over the last K positions (default 1: the last)
  --threads N              worker threads (default: all cores; more than the cores is capped, with a line)
  --weights MODE           resident|stream|auto, as for power-iter (for the Jacobian's layers and the KL's)
  --json                   print a JSON summary on stdout

Resuming: run the same command again. Pair files already in DIR from the same run (same model, prompts
and flags) are read, not recomputed; a pair file from a different run is an error naming the file and
what differs. Ctrl-C loses the pair being computed (with the whole-Jacobian solver, the source's JVPs
run so far); the finished pairs stay.

Shared across pairs: the forward at sv = 0 (layers 0..min S once, min S+1..max T once: each pair's
products run on a view of it), the weights (read once, or streamed per pass), the KL prompts'
unsteered pass (once, the state after every source layer kept) and, with the whole-Jacobian solver,
a source's JVPs (one pass from S gives the tangents at every target). Per pair: the KL of its vectors
at both signs, and its block Lanczos products or its certificate (k VJPs from T).
`;

const OPTIONS: Options = {
  ...PROMPT_OPTIONS,
  "out-dir": { type: "string" },
  sources: { type: "string" },
  targets: { type: "string" },
  positions: { type: "string" },
  "num-vectors": { type: "string" },
  tol: { type: "string" },
  "max-iters": { type: "string" },
  seed: { type: "string" },
  "scale-frac": { type: "string" },
  scales: { type: "string" },
  "kl-positions": { type: "string" },
  threads: { type: "string" },
  weights: { type: "string" },
  solver: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

/** `A..B` (inclusive) or `a,b,c`, each within lo..hi. */
export function layerRange(flag: string, value: string | undefined, lo: number, hi: number): number[] {
  if (value === undefined) return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
  const m = /^(\d+)\.\.(\d+)$/.exec(value.trim());
  let xs: number[];
  if (m) {
    const a = Number(m[1]), b = Number(m[2]);
    if (a > b) throw new UsageError(`--${flag} ${value}: the range is empty (${a} > ${b})`);
    xs = Array.from({ length: b - a + 1 }, (_, i) => a + i);
  } else {
    const parts = value.split(",").map((x) => x.trim());
    if (parts.some((p) => !/^\d+$/.test(p))) throw new UsageError(`--${flag} ${value}: expected A..B or a comma-separated list of layers`);
    xs = [...new Set(parts.map(Number))].sort((a, b) => a - b);
  }
  const bad = xs.find((x) => x < lo || x > hi);
  if (bad !== undefined) throw new UsageError(`--${flag} ${value}: layer ${bad} is outside ${lo}..${hi}`);
  return xs;
}

export const pairFileName = (p: AtlasPair) => `pair-S${String(p.source).padStart(2, "0")}-T${String(p.target).padStart(2, "0")}.safetensors`;

/** The merged file, the report's input. */
export interface AtlasFile {
  format: "jacsteer.atlas.v1";
  model: string;
  num_layers: number;
  identity: Record<string, string>;
  pairs: AtlasPairResult[];
  /** every planned pair is in `pairs` */
  complete: boolean;
  planned: number;
}

export async function atlas(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(ATLAS_HELP);
    return 0;
  }
  if (f["out-dir"] === undefined) throw new UsageError("--out-dir DIR is required (one file per pair goes there)");
  const outDir = String(f["out-dir"]);
  if (existsSync(outDir) && !statSync(outDir).isDirectory()) throw new UsageError(`--out-dir ${outDir}: exists and is not a directory`);
  const K = intFlag(f, "positions", 4, 1)!;
  const klK = intFlag(f, "kl-positions", 1, 1)!;
  const n = intFlag(f, "num-vectors", 8, 1)!;
  const tol = numberFlag(f, "tol", ATLAS_TOL)!;
  if (!(tol > 0)) throw new UsageError(`--tol ${tol}: must be positive (an atlas runs to a tolerance)`);
  const maxIters = intFlag(f, "max-iters", undefined, 1);
  const seed = intFlag(f, "seed", 0, 0)!;
  const scales = klScalesFlag(f);
  const threads = threadsFlag(f, log);
  const weights = weightsFlag(f);
  const solver = (f.solver as string | undefined) ?? "auto";
  if (solver !== "auto" && solver !== "lanczos" && solver !== "jacobian") throw new UsageError(`--solver ${solver}: expected auto, lanczos or jacobian`);
  const started = performance.now();

  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  try {
    const L = ckpt.config.numLayers, d = ckpt.config.hiddenSize;
    if (L < 2) throw new UsageError(`--model ${ckpt.dir}: an atlas needs at least 2 layers`);
    if (n > d) throw new UsageError(`--num-vectors ${n} exceeds the hidden size ${d}`);
    const sources = layerRange("sources", f.sources as string | undefined, 0, L - 2);
    const targets = layerRange("targets", f.targets as string | undefined, 1, L - 1);
    const pairs = atlasPairs(sources, targets);
    if (!pairs.length) throw new UsageError(`--sources ${f.sources ?? "0.." + (L - 2)} --targets ${f.targets ?? "1.." + (L - 1)}: no pair with S < T`);
    const prompts = await resolvePrompts(promptFlags(f), ckpt);
    prompts.forEach((p, i) => {
      checkTokens(ckpt.config, p, `prompt ${i + 1}`);
      if (p.length < Math.max(K, klK)) throw new UsageError(`--${p.length < K ? "positions" : "kl-positions"} ${Math.max(K, klK)}: prompt ${i + 1} has only ${p.length} token(s)`);
    });
    const rt = await createNodeRuntime();
    // Every input that changes a pair's numbers: a pair file written under another identity is refused.
    const identity: Record<string, string> = {
      model_config: modelConfigKey(ckpt.config),
      model: ckpt.name,
      tokens_sha256: createHash("sha256").update(JSON.stringify(prompts)).digest("hex"),
      positions: String(K),
      num_vectors: String(n),
      tol: String(tol),
      max_iters: maxIters === undefined ? "" : String(maxIters),
      seed: String(seed),
      scale_kind: scales.kind,
      magnitudes: scales.values.join(","),
      kl_positions: String(klK),
      solver,
      kernels: rt.build,
    };
    mkdirSync(outDir, { recursive: true });
    const done = new Map<string, AtlasPairResult>();
    for (const p of pairs) {
      const file = join(outDir, pairFileName(p));
      if (!existsSync(file)) continue;
      done.set(pairFileName(p), readPairFile(file, identity));
    }
    const todo = pairs.filter((p) => !done.has(pairFileName(p)));
    const minS = Math.min(...todo.map((p) => p.source)), maxT = Math.max(...todo.map((p) => p.target));
    log(
      `jacsteer: ${ckpt.name}: ${pairs.length} pair(s) (S ${sources[0]}..${sources.at(-1)}, T ${targets[0]}..${targets.at(-1)}), ${done.size} already in ${outDir}; ` +
        `${prompts.length} prompt(s) of ${prompts.map((p) => p.length).join(", ")} tokens; K=${K}, top ${n}, --tol ${tol}; KL at ${scales.kind === "absolute" ? "+-" + scales.values.join(",") : "+-" + scales.values.join(",") + " x ||h_S||"}; threads ${threads}`,
    );
    const writeMerged = () => {
      const merged: AtlasFile = { format: "jacsteer.atlas.v1", model: ckpt.name, num_layers: L, identity, pairs: pairs.filter((p) => done.has(pairFileName(p))).map((p) => done.get(pairFileName(p))!), complete: done.size === pairs.length, planned: pairs.length };
      writeFileAtomic(join(outDir, "atlas.json"), JSON.stringify(merged, null, 1) + "\n");
    };
    let computed = 0;
    if (todo.length) {
      const gemm = await createParallelGemm(rt, threads);
      let engine: SteeringEngine;
      let model: ForwardModel;
      try {
        engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, prompts, { sourceLayer: minS, targetLayer: maxT, positions: K }, { gemm, log, weights });
      } catch (e) {
        await gemm.close();
        throw e;
      }
      // The KL forward shares the threads (the engine owns and closes them).
      const shared = borrowGemm(gemm);
      try {
        model = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { gemm: shared, log, weights, fullHead: true });
      } catch (e) {
        await engine.close();
        throw e;
      }
      const onSignal = (signal: NodeJS.Signals) => {
        log(`jacsteer: interrupted (${signal}); ${done.size} of ${pairs.length} pairs are in ${outDir}: run the same command to continue`);
        process.exit(signal === "SIGINT" ? 130 : 143);
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      try {
        const ev = await KlEvaluator.create(model, prompts, { lastK: klK, steerLayers: [...new Set(todo.map((p) => p.source))] });
        const progress = new WorkProgress("atlas", log, 0);
        const total = todo.reduce((s, p) => s + pairWork(p, L), 0);
        let work = 0;
        const finishPair = async (p: AtlasPair, solve: SolveResult, how: AtlasPairResult["solver"], solveSeconds: number, workAfter = work + pairWork(p, L), sweepSeconds?: number) => {
          const result = await scoreAtlasPair(ev, p, solve, how, scales, solveSeconds, sweepSeconds);
          writeFileAtomic(join(outDir, pairFileName(p)), encodeVectorFile({
            vectors: solve.vectors.map((v) => Float32Array.from(v)),
            singularValues: result.singular_values,
            metadata: {
              method: `atlas/${how}`,
              model: ckpt.name,
              model_config: identity.model_config,
              source_layer: String(p.source),
              target_layer: String(p.target),
              positions: String(K),
              seed: String(seed),
              tokens: JSON.stringify(prompts),
              num_vectors: String(n),
              tol: String(tol),
              converged: String(result.converged),
              products: String(result.products),
              kernels: rt.build,
              atlas_identity: JSON.stringify(identity),
              atlas_pair: JSON.stringify(result),
            },
          }));
          done.set(pairFileName(p), result);
          computed++;
          writeMerged();
          work = workAfter;
          progress.report(
            work,
            total,
            `pair ${computed}/${todo.length} (S ${p.source} T ${p.target}): sigma_1 ${result.singular_values[0].toPrecision(4)}, max KL ${result.max_kl.toExponential(2)} (vector ${result.best_vector}), ${how === "jacobian" ? "whole Jacobian" : `${result.products} products`}${result.converged ? "" : ", NOT converged"}, ${(result.seconds.solve + result.seconds.kl).toFixed(1)} s`,
          );
          await new Promise<void>((r) => setImmediate(r)); // a signal is handled between pairs
        };
        const lanczos = async (p: AtlasPair) => {
          const t0 = performance.now();
          const solve = await lanczosPair(engine, p, { numVectors: n, tol, seed, maxIters });
          await finishPair(p, solve, "lanczos", (performance.now() - t0) / 1000);
        };
        // Source by source: every planned target of S decides the plan (not only the ones left), so a
        // resumed run solves each pair exactly as an uninterrupted one.
        const bytesPerTarget = 4 * d * engine.outputDim;
        for (const S of sources) {
          const group = pairs.filter((p) => p.source === S);
          if (!group.some((p) => !done.has(pairFileName(p)))) continue;
          let rest = group;
          if (solver !== "jacobian") {
            // auto: the first (shortest) pair by Lanczos measures how many products this spectrum needs.
            const first = group[0]!;
            if (!done.has(pairFileName(first))) await lanczos(first);
            rest = group.slice(1);
            if (!rest.length) continue;
            const P = done.get(pairFileName(first))!.products;
            const cost = sweepCost(S, rest.map((p) => p.target), d, n, bytesPerTarget, P);
            if (solver === "lanczos" || cost.lanczos <= cost.jacobian) {
              if (solver === "auto") log(`atlas: S ${S}: block Lanczos per pair (about ${fmtCost(cost.lanczos)} against ${fmtCost(cost.jacobian)} for the whole Jacobian; the first pair took ${P} products)`);
              for (const p of rest) if (!done.has(pairFileName(p))) await lanczos(p);
              continue;
            }
            log(`atlas: S ${S}: the whole Jacobian for T ${rest[0]!.target}..${rest.at(-1)!.target} (about ${fmtCost(cost.jacobian)} against ${fmtCost(cost.lanczos)} for Lanczos per pair at the first pair's ${P} products)`);
          }
          for (const sweep of jacobianSweeps(rest.map((p) => p.target), bytesPerTarget)) {
            const left = sweep.filter((t) => !done.has(pairFileName({ source: S, target: t })));
            if (!left.length) continue;
            const sweepWork = left.reduce((s, t) => s + pairWork({ source: S, target: t }, L), 0);
            const base = work;
            let sweepDone = 0;
            let t0 = performance.now();
            let passSeconds = 0;
            await solveSweep(
              engine.restrict(S, sweep.at(-1)!),
              sweep,
              { numVectors: n, tol, seed, skip: new Set(sweep.filter((t) => !left.includes(t))) },
              async (sol) => {
                const now = performance.now();
                const p = { source: S, target: sol.target };
                sweepDone += pairWork(p, L);
                await finishPair(p, sol, "jacobian", passSeconds / left.length + (now - t0) / 1000, base + 0.9 * sweepWork + 0.1 * sweepDone, passSeconds / left.length);
                t0 = performance.now();
              },
              (cols, all) => {
                if (cols === all) {
                  passSeconds = (performance.now() - t0) / 1000;
                  t0 = performance.now();
                }
                // The JVPs are about 90% of a sweep's work.
                progress.report(base + 0.9 * sweepWork * (cols / all), total, `S ${S}: JVPs of the unit vectors to T ${sweep[0]}..${sweep.at(-1)}: ${cols}/${all}`);
              },
            );
          }
        }
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        await model.close();
        await engine.close();
      }
    } else {
      writeMerged();
    }
    const results = pairs.map((p) => done.get(pairFileName(p))!);
    const unconverged = results.filter((r) => !r.converged);
    if (unconverged.length) warn(`${unconverged.length} of ${results.length} pairs did not converge to --tol ${tol} (first: S ${unconverged[0].source} T ${unconverged[0].target}); raise --max-iters`);
    const best = results.reduce((a, b) => (b.max_kl > a.max_kl ? b : a));
    const seconds = (performance.now() - started) / 1000;
    if (f.json) {
      process.stdout.write(JSON.stringify({ model: ckpt.name, out_dir: outDir, pairs: results.length, computed, resumed: results.length - computed, best_pair: { source: best.source, target: best.target, vector: best.best_vector, max_kl: best.max_kl }, seconds, threads, kernels: rt.build, warnings: warnings() }, null, 2) + "\n");
    } else {
      process.stdout.write(`${results.length} pairs in ${outDir} (${computed} computed, ${results.length - computed} read back) in ${seconds.toFixed(1)} s; largest KL: S ${best.source} T ${best.target} vector ${best.best_vector}, ${best.max_kl.toExponential(3)}\n`);
    }
    return 0;
  } finally {
    ckpt.close();
  }
}

/** A cost in one-layer products, for the plan line. */
const fmtCost = (c: number) => `${Math.round(c).toLocaleString("en-US")} layer-products`;

/** A pair file of this run (its atlas_identity must match), or a UsageError naming the file and the field. */
function readPairFile(file: string, identity: Record<string, string>): AtlasPairResult {
  const r = openSafetensorsFile(file);
  let meta: Record<string, string>;
  try {
    meta = decodeVectorFile(r, file).metadata;
  } finally {
    r.close?.();
  }
  let theirs: Record<string, string>, pair: AtlasPairResult;
  try {
    theirs = JSON.parse(meta.atlas_identity ?? "null");
    pair = JSON.parse(meta.atlas_pair ?? "null");
  } catch {
    throw new UsageError(`--out-dir: ${file} is not an atlas pair file (bad atlas metadata)`);
  }
  if (!theirs || !pair) throw new UsageError(`--out-dir: ${file} is not an atlas pair file (no atlas metadata)`);
  for (const k of new Set([...Object.keys(identity), ...Object.keys(theirs)])) {
    if (identity[k] !== theirs[k]) throw new UsageError(`--out-dir: ${file} is from another atlas run: ${k} differs (the file's: ${theirs[k] ?? "(none)"}, this run: ${identity[k] ?? "(none)"}); use another --out-dir or remove it`);
  }
  return pair;
}
