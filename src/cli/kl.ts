// `jacsteer kl`: KL(steered || unsteered) of the next-token distribution, per vector and magnitude,
// at both signs (src/steering-eval/kl.ts computes; this file reads flags and writes results).
import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { intFlag, parseFlags, stringList, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { defaultModelDir, log, promptFlags, PROMPT_OPTIONS, resolvePrompts, warn, warnings } from "./session.js";
import { readVectorChoices } from "./generate.js";
import { steeringLayer } from "../api/steering.js";
import { Reporter } from "../api/common.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag, WEIGHTS_HELP } from "./weights-flag.js";
import { openCheckpoint } from "../node/checkpoint.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { createNodeRuntime } from "../node/runtime.js";
import { createParallelGemm } from "../node/thread-pool.js";
import { checkTokens } from "../model/qwen3.js";
import { ForwardModel } from "../engine/forward.js";
import { KlEvaluator, klBothSigns, type KlScales } from "../steering-eval/kl.js";
import { WorkProgress } from "../steering-eval/progress.js";

/** The research line's steering magnitude: 0.35 x ||h_S|| at the last token. */
export const DEFAULT_SCALE_FRAC = 0.35;
/** A KL this small at the largest magnitude means the vector barely moves the output. */
export const TINY_KL = 1e-6;

export const KL_HELP = `jacsteer kl: KL(steered || unsteered) of the next-token distribution, per vector and scale, at both signs

  --model DIR              checkpoint directory (default: the bundled tiny model)
  --prompt TEXT            an eval prompt (repeatable); --prompts FILE (one per line, or a .json array);
                           --tokens 1,2,3 (repeatable); --chat, --system TEXT as for power-iter
  --vectors FILE[:ROW]     steering vector(s) (repeatable): FILE alone = every row of FILE
  --layer S                layer whose output receives the steering (default: the vector files'
                           source_layer when they agree, else the model-size default)
  --scale-frac F[,F2...]   magnitude as F x ||h_S|| at the last token of each prompt, unsteered
                           (default ${DEFAULT_SCALE_FRAC}, the research line's choice)
  --scales C[,C2...]       absolute magnitudes instead (positive; each is applied as +C and -C)
  --positions K            score the mean KL over the last K positions (default 1: the last)
  --threads N              worker threads (default: all cores; more than the cores is capped, with a line)
${WEIGHTS_HELP}  --json                   print the summary as JSON on stdout instead of a table
  --out FILE.json          write every row (KL per prompt, the scale applied to each prompt) to FILE.json

KL(p_steered || p_unsteered) = sum_v p_steered(v) (log p_steered(v) - log p_unsteered(v)), in nats,
over the whole vocabulary, log-softmax in float64; per (vector, magnitude, sign) the mean over prompts.
The summary gives per vector and magnitude KL at +, at -, and their maximum ("max KL": a single sign
misses vectors that act at one sign only).

How it runs: every prompt once unsteered through all layers (the state after layer S kept), then every
(prompt, vector, magnitude, sign) sequence from that state through layers S+1..L-1, stacked in batches
that keep memory bounded; the final norm and the whole LM head at the scored positions only. The
numbers do not depend on --threads or the batching.
`;

const OPTIONS: Options = {
  ...PROMPT_OPTIONS,
  vectors: { type: "string", multiple: true },
  layer: { type: "string" },
  "scale-frac": { type: "string" },
  scales: { type: "string" },
  positions: { type: "string" },
  threads: { type: "string" },
  weights: { type: "string" },
  json: { type: "boolean" },
  out: { type: "string" },
  help: { type: "boolean", short: "h" },
};

/** A comma-separated list of positive finite numbers, e.g. 0.35 or 2,4,8. */
export function positiveList(flag: string, value: unknown): number[] {
  const s = String(value);
  const xs = s.split(",").map((x) => x.trim());
  if (!xs.length || xs.some((x) => !/^[0-9]*\.?[0-9]+(e[-+]?[0-9]+)?$/i.test(x))) throw new UsageError(`--${flag} ${s}: expected comma-separated positive numbers, e.g. 0.35 or 2,4`);
  const nums = xs.map(Number);
  if (nums.some((x) => !(x > 0) || !Number.isFinite(x))) throw new UsageError(`--${flag} ${s}: every value must be a positive number (each is applied at + and - sign)`);
  return nums;
}

/** --scales or --scale-frac (default --scale-frac 0.35). */
export function klScalesFlag(f: Record<string, unknown>): KlScales {
  if (f.scales !== undefined && f["scale-frac"] !== undefined) throw new UsageError("--scales and --scale-frac exclude each other: give one");
  if (f.scales !== undefined) return { kind: "absolute", values: positiveList("scales", f.scales) };
  return { kind: "residual-fraction", values: f["scale-frac"] === undefined ? [DEFAULT_SCALE_FRAC] : positiveList("scale-frac", f["scale-frac"]) };
}

export function checkJsonOutPath(out: string | undefined): void {
  if (out === undefined) return;
  if (!out.endsWith(".json")) throw new UsageError(`--out ${out}: the file name must end in .json`);
  const dir = dirname(resolve(out));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--out ${out}: directory ${dir} does not exist`);
}

export async function kl(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(KL_HELP);
    return 0;
  }
  const vectorArgs = stringList(f, "vectors");
  if (!vectorArgs.length) throw new UsageError("--vectors FILE[:ROW] is required (the vectors to score)");
  const scales = klScalesFlag(f);
  const K = intFlag(f, "positions", 1, 1)!;
  const threads = threadsFlag(f, log);
  const weights = weightsFlag(f);
  checkJsonOutPath(f.out as string | undefined);
  const started = performance.now();

  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  try {
    const L = ckpt.config.numLayers, d = ckpt.config.hiddenSize;
    const vectors = readVectorChoices(vectorArgs, "--vectors", d);
    const S = steeringLayer(intFlag(f, "layer", undefined, 0), L, vectors, new Reporter({ log, onWarning: warn }));
    const prompts = await resolvePrompts(promptFlags(f), ckpt);
    prompts.forEach((p, i) => {
      checkTokens(ckpt.config, p, `prompt ${i + 1}`);
      if (p.length < K) throw new UsageError(`--positions ${K}: prompt ${i + 1} has only ${p.length} token(s)`);
    });
    const rt = await createNodeRuntime();
    const gemm = await createParallelGemm(rt, threads);
    let model: ForwardModel;
    try {
      model = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { gemm, log, weights, fullHead: true });
    } catch (e) {
      await gemm.close();
      throw e;
    }
    const what = scales.kind === "absolute" ? `scales +-${scales.values.join(", +-")}` : `+-${scales.values.join(", +-")} x ||h_${S}|| at the last token`;
    log(`jacsteer: ${ckpt.name}: ${prompts.length} prompt(s) of ${prompts.map((p) => p.length).join(", ")} tokens; ${vectors.length} vector(s) at layer ${S}, ${what}; last ${K} position(s); threads ${threads}; kernels ${rt.build}`);
    let result;
    try {
      const ev = await KlEvaluator.create(model, prompts, { lastK: K, steerLayers: [S] });
      const progress = new WorkProgress("kl", log);
      result = await klBothSigns(ev, S, vectors.map((v) => v.vector), scales, (done, total) => progress.report(done, total, `${done}/${total} steered sequences`));
    } finally {
      await model.close();
    }
    const top = Math.max(...scales.values);
    for (const s of result.summary) {
      if (s.magnitude === top && s.max_kl < TINY_KL) warn(`${vectors[s.vector].label}: KL below ${TINY_KL} at both signs of the largest magnitude (${top}): the vector barely moves the next-token distribution`);
    }
    const seconds = (performance.now() - started) / 1000;
    const labelled = {
      layer: S,
      scale_kind: scales.kind,
      magnitudes: scales.values,
      positions: K,
      vectors: vectors.map((v) => v.label),
      summary: result.summary.map((s) => ({ ...s, label: vectors[s.vector].label })),
    };
    if (f.out !== undefined) {
      writeFileAtomic(String(f.out), JSON.stringify({ model: ckpt.name, tokens: prompts, ...labelled, rows: result.rows }, null, 1) + "\n");
      log(`jacsteer: wrote ${f.out}`);
    }
    if (f.json) {
      process.stdout.write(JSON.stringify({ model: ckpt.name, prompts: prompts.length, tokens: prompts, ...labelled, warnings: warnings(), seconds, threads, weights: model.weightPlan.mode, kernels: rt.build, out: f.out ?? null }, null, 2) + "\n");
    } else {
      const unit = scales.kind === "absolute" ? "scale" : "x||h_S||";
      const lines = [`vector${" ".repeat(Math.max(0, Math.max(...vectors.map((v) => v.label.length)) - 6))}  ${unit.padStart(9)}  ${"KL(+)".padStart(11)}  ${"KL(-)".padStart(11)}  ${"max KL".padStart(11)}  sign`];
      const w = lines[0].indexOf("  ");
      for (const s of labelled.summary) lines.push(`${s.label.padEnd(w)}  ${String(s.magnitude).padStart(9)}  ${s.kl_plus.toExponential(4).padStart(11)}  ${s.kl_minus.toExponential(4).padStart(11)}  ${s.max_kl.toExponential(4).padStart(11)}  ${s.sign > 0 ? "+" : "-"}`);
      process.stdout.write(lines.join("\n") + "\n");
      log(`jacsteer: ${result.rows.length * prompts.length} steered sequences in ${seconds.toFixed(2)} s`);
    }
    return 0;
  } finally {
    ckpt.close();
  }
}
