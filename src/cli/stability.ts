// `jacsteer stability`: the same Jacobian solved over several seeds and/or prompt subsets, and which
// singular vectors (or bands of near-tied ones) come back every time (src/stability/stability.ts).
import { intFlag, numberFlag, parseFlags, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { defaultLayers, defaultModelDir, log, promptFlags, PROMPT_OPTIONS, resolvePrompts, warn, warnings } from "./session.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag } from "./weights-flag.js";
import { checkJsonOutPath } from "./kl.js";
import { openCheckpoint } from "../node/checkpoint.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { createNodeRuntime } from "../node/runtime.js";
import { createParallelGemm } from "../node/thread-pool.js";
import { borrowGemm } from "../engine/parallel-gemm.js";
import { SteeringEngine, autoBlockSize } from "../engine/steering-engine.js";
import { checkSiteLayers } from "../jacobian/steering-jacobian.js";
import { blockLanczosAsync } from "../solvers/block-lanczos.js";
import { WorkProgress } from "../steering-eval/progress.js";
import { analyzeStability, DEFAULT_STABILITY_COS, DEFAULT_STABILITY_GAP, promptSubsets, type StabilityResult } from "../stability/stability.js";

export const STABILITY_TOL = 1e-3;
export const DEFAULT_SEEDS = [0, 1, 2];
export const DEFAULT_SUBSET_FRAC = 0.5;

export const STABILITY_HELP = `jacsteer stability: which singular vectors reproduce across seeds and prompt subsets

  --model DIR              checkpoint directory (default: the bundled tiny model)
  --prompt TEXT            a prompt (repeatable); --prompts FILE; --tokens 1,2,3 (repeatable); --chat, --system
  --source-layer S, --target-layer T, --positions K   the Jacobian, as for power-iter (defaults the same)
  --num-vectors N          singular vectors per run (default 8)
  --tol E                  block Lanczos tolerance per run (default ${STABILITY_TOL}); --max-iters I
  --seeds LIST             random starts (default ${DEFAULT_SEEDS.join(",")})
  --prompt-subsets N       also N random subsets of the prompts (each with every seed; default 0: all
                           prompts only); --subset-frac F: each holds ceil(F x prompts) (default ${DEFAULT_SUBSET_FRAC})
  --cos C                  |cos| a vector must reach with its best match in every other run to count as
                           reproducible; also the principal-angle cosine for bands (default ${DEFAULT_STABILITY_COS})
  --gap G                  singular values within a relative gap (sigma_i - sigma_i+1) / sigma_i < G are
                           near-tied and form a band, compared as a subspace (default ${DEFAULT_STABILITY_GAP})
  --threads N, --weights MODE   as for power-iter
  --json                   print the result as JSON on stdout
  --out FILE.json          write the result (every run's singular values, every best |cos|) for \`report --stability\`

Runs: every seed on all prompts, then (with --prompt-subsets) every seed on each subset. Per vector:
the best |cos| with each other run, the smallest of them, the relative gap to the next singular
value, and a verdict: reproducible, in a reproducible band (near-tied values whose subspace
reproduces: the single vector is arbitrary, the band is not), or not reproducible.
`;

const OPTIONS: Options = {
  ...PROMPT_OPTIONS,
  "source-layer": { type: "string" },
  "target-layer": { type: "string" },
  positions: { type: "string" },
  "num-vectors": { type: "string" },
  tol: { type: "string" },
  "max-iters": { type: "string" },
  seeds: { type: "string" },
  "prompt-subsets": { type: "string" },
  "subset-frac": { type: "string" },
  cos: { type: "string" },
  gap: { type: "string" },
  threads: { type: "string" },
  weights: { type: "string" },
  json: { type: "boolean" },
  out: { type: "string" },
  help: { type: "boolean", short: "h" },
};

/** What `--out` holds: the report's input. */
export interface StabilityFile extends StabilityResult {
  format: "jacsteer.stability.v1";
  model: string;
  source_layer: number;
  target_layer: number;
  positions: number;
  runs: { label: string; seed: number; prompts: number[]; singular_values: number[]; converged: boolean; products: number }[];
}

export async function stability(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(STABILITY_HELP);
    return 0;
  }
  const K = intFlag(f, "positions", 4, 1)!;
  const n = intFlag(f, "num-vectors", 8, 1)!;
  const tol = numberFlag(f, "tol", STABILITY_TOL)!;
  if (!(tol > 0)) throw new UsageError(`--tol ${tol}: must be positive`);
  const maxIters = intFlag(f, "max-iters", undefined, 1);
  const seedsText = (f.seeds as string | undefined) ?? DEFAULT_SEEDS.join(",");
  if (!/^\d+(,\d+)*$/.test(seedsText)) throw new UsageError(`--seeds ${seedsText}: expected comma-separated non-negative integers`);
  const seeds = [...new Set(seedsText.split(",").map(Number))];
  const subsetCount = intFlag(f, "prompt-subsets", 0, 0)!;
  const frac = numberFlag(f, "subset-frac", DEFAULT_SUBSET_FRAC)!;
  if (!(frac > 0 && frac <= 1)) throw new UsageError(`--subset-frac ${frac}: must be in (0, 1]`);
  if (f["subset-frac"] !== undefined && !subsetCount) throw new UsageError("--subset-frac needs --prompt-subsets N");
  const cos = numberFlag(f, "cos", DEFAULT_STABILITY_COS)!;
  if (!(cos > 0 && cos <= 1)) throw new UsageError(`--cos ${cos}: must be in (0, 1]`);
  const gap = numberFlag(f, "gap", DEFAULT_STABILITY_GAP)!;
  if (!(gap >= 0 && gap < 1)) throw new UsageError(`--gap ${gap}: must be in [0, 1)`);
  const runCount = seeds.length * (1 + subsetCount);
  if (runCount < 2) throw new UsageError(`--seeds ${seedsText}${subsetCount ? "" : " without --prompt-subsets"}: one run only; give at least two seeds or --prompt-subsets`);
  checkJsonOutPath(f.out as string | undefined);
  const threads = threadsFlag(f, log);
  const weights = weightsFlag(f);
  const started = performance.now();

  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  try {
    const L = ckpt.config.numLayers, d = ckpt.config.hiddenSize;
    const defaults = defaultLayers(L);
    const S = intFlag(f, "source-layer", defaults.source)!;
    const T = intFlag(f, "target-layer", defaults.target)!;
    if (f["source-layer"] === undefined || f["target-layer"] === undefined) log(`jacsteer: using --source-layer ${S} --target-layer ${T} (defaults for a ${L}-layer model)`);
    checkSiteLayers(L, S, T);
    if (n > d) throw new UsageError(`--num-vectors ${n} exceeds the hidden size ${d}`);
    const prompts = await resolvePrompts(promptFlags(f), ckpt);
    const short = prompts.findIndex((p) => p.length < K);
    if (short >= 0) throw new UsageError(`--positions ${K}: prompt ${short + 1} has only ${prompts[short].length} token(s)`);
    if (subsetCount && prompts.length < 2) throw new UsageError(`--prompt-subsets ${subsetCount}: needs at least 2 prompts (${prompts.length} given)`);
    const size = Math.max(1, Math.ceil(frac * prompts.length));
    const sets = [prompts.map((_, i) => i), ...promptSubsets(prompts.length, subsetCount, size, 1)];
    log(`jacsteer: ${ckpt.name}: S=${S} T=${T} K=${K}; ${prompts.length} prompt(s); ${runCount} runs (seeds ${seeds.join(",")}${subsetCount ? `; all prompts and ${subsetCount} subset(s) of ${size}` : ""}); top ${n}, --tol ${tol}; threads ${threads}`);
    const rt = await createNodeRuntime();
    const gemm = await createParallelGemm(rt, threads);
    const runs: StabilityFile["runs"] = [];
    const vectors: Float64Array[][] = [];
    const progress = new WorkProgress("stability", log, 0);
    try {
      for (const [si, set] of sets.entries()) {
        // One engine per prompt set (its forward at sv0); its heap is released before the next.
        const mark = rt.heap.mark();
        const engine = await SteeringEngine.create(rt, ckpt.config, ckpt.tensors, set.map((i) => prompts[i]), { sourceLayer: S, targetLayer: T, positions: K }, { gemm: borrowGemm(gemm), log: si === 0 ? log : undefined, weights });
        try {
          for (const seed of seeds) {
            // The block size power-iter takes for these prompts: each run is that command's, bitwise.
            const res = await blockLanczosAsync({ dim: d, applyBlock: (V) => engine.normalProducts(V) }, { numVectors: n, tol, seed, maxIters, blockSize: autoBlockSize(n, engine.prompts) });
            const label = `${si === 0 ? "all prompts" : `subset ${si} (prompts ${set.map((i) => i + 1).join(",")})`}, seed ${seed}`;
            runs.push({ label, seed, prompts: set, singular_values: res.singularValues, converged: res.converged, products: res.products });
            vectors.push(res.vectors);
            progress.report(runs.length, runCount, `run ${runs.length}/${runCount} (${label}): sigma ${res.singularValues.slice(0, 4).map((x) => x.toPrecision(4)).join(" ")}${n > 4 ? " ..." : ""}, ${res.products} products${res.converged ? "" : ", NOT converged"}`);
          }
        } finally {
          await engine.close();
          rt.heap.release(mark);
        }
      }
    } finally {
      await gemm.close();
    }
    const unconverged = runs.filter((r) => !r.converged);
    if (unconverged.length) warn(`${unconverged.length} of ${runs.length} runs did not converge to --tol ${tol} (first: ${unconverged[0].label}): differences between runs may be solver error, not instability; raise --max-iters`);
    const result = analyzeStability(runs.map((r, i) => ({ label: r.label, vectors: vectors[i], singularValues: r.singular_values })), { cos, gap });
    const file: StabilityFile = { format: "jacsteer.stability.v1", model: ckpt.name, source_layer: S, target_layer: T, positions: K, runs, ...result };
    if (f.out !== undefined) {
      writeFileAtomic(String(f.out), JSON.stringify(file, null, 1) + "\n");
      log(`jacsteer: wrote ${f.out}`);
    }
    const seconds = (performance.now() - started) / 1000;
    if (f.json) {
      process.stdout.write(JSON.stringify({ ...file, seconds, threads, kernels: rt.build, warnings: warnings(), out: f.out ?? null }, null, 2) + "\n");
    } else {
      const lines = [`  i  sigma        gap to next  min best |cos|  verdict`];
      for (const v of result.vectors) {
        const band = v.band === null ? "" : ` (band ${result.bands[v.band].first}..${result.bands[v.band].last}, principal cos >= ${result.bands[v.band].min_principal_cos.toFixed(3)})`;
        lines.push(`${String(v.index).padStart(3)}  ${v.sigma.toPrecision(6).padEnd(11)}  ${v.relative_gap === null ? "-".padEnd(11) : v.relative_gap.toFixed(4).padEnd(11)}  ${v.min_best_cos.toFixed(4).padEnd(14)}  ${v.status}${band}`);
      }
      lines.push(`${result.reproducible_count} of ${result.vectors.length} vectors reproducible (alone or within a reproducible band) over ${runs.length} runs, |cos| >= ${cos}, near-tied below a relative gap of ${gap}; ${seconds.toFixed(1)} s`);
      process.stdout.write(lines.join("\n") + "\n");
    }
    return 0;
  } finally {
    ckpt.close();
  }
}
