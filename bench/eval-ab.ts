// eval-ab at the research line's size on the Qwen3-0.6B-shaped BF16 checkpoint (bench/make-checkpoint.ts,
// random weights, the real Qwen3 tokenizer): 100 A/B questions x 12 vectors x 5 scales (6100 scored
// sequences with the unsteered ones), steering at layer 6, 2 threads.
//   - batched: evaluateAbBatched on the engine's forward (what `jacsteer eval-ab` runs), all 100 questions
//     (or the first --questions N, extrapolated linearly like today's code);
//   - today's code: evaluateAb, one sequence at a time on the autodiff model's decoder (what eval-ab ran
//     before issue 11), single-threaded by construction. It takes about a second per sequence, so it is
//     timed on the first QUESTIONS_OLD questions (all their 61 sequences) and extrapolated linearly to
//     100 (every question costs the same 61 sequences; the questions' token counts are printed).
// Both in this process, one after the other; the rows they share are compared (max |diff| difference).
// Each part's model load is timed apart from its evaluation. Writes bench/results/eval-ab.md and .json.
//
//   node --experimental-wasm-relaxed-simd dist/bench/eval-ab.js [--questions N] [--old-questions N] [--threads N]
// (--questions N < 100 times the batched forward on the first N questions too, extrapolated the same way.)
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AutodiffContext } from "../src/autodiff/tensor.js";
import { ForwardModel } from "../src/engine/forward.js";
import { evaluateAb, evaluateAbBatched, toAbPrompt, type AbPrompt, type AbRow } from "../src/evaluation/ab.js";
import { parseDataset } from "../src/evaluation/dataset.js";
import { buildItemPrompt } from "../src/evaluation/prompt.js";
import { SteeredDecoder } from "../src/generation/decoder.js";
import { Qwen3Model } from "../src/model/qwen3.js";
import { loadQwen3Weights } from "../src/model/weights.js";
import { openCheckpoint } from "../src/node/checkpoint.js";
import { enableRelaxedSimd } from "../src/node/relaxed-simd.js";
import { createNodeRuntime, packageRoot } from "../src/node/runtime.js";
import { createParallelGemm } from "../src/node/thread-pool.js";
import { loadTokenizerFromDir } from "../src/node/tokenizer-files.js";
import { machineInfo, machineLine, markdownTable } from "./harness.js";
import { ensureBenchCheckpoint } from "./make-checkpoint.js";

const QUESTIONS = 100, VECTORS = 12, SCALES = [-8, -4, 0, 4, 8], LAYER = 6;

/** 100 questions: the example dataset's items, each under a numbered preamble so no two prompts are equal. */
function questions(): ReturnType<typeof parseDataset>["items"] {
  const base = JSON.parse(readFileSync(join(packageRoot(), "examples", "ab-dataset.json"), "utf8")) as { question: string; answer_matching_behavior: string; answer_not_matching_behavior: string }[];
  const items = Array.from({ length: QUESTIONS }, (_, i) => {
    const q = base[i % base.length]!;
    return { ...q, question: `Survey item ${i + 1}. ${q.question}` };
  });
  return parseDataset(JSON.stringify(items), "bench").items;
}

/** Deterministic unit vectors times the median residual norm scale of a random model (~1). */
function vectors(d: number): Float32Array[] {
  let s = 12345;
  const uniform = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  return Array.from({ length: VECTORS }, () => {
    const v = Float32Array.from({ length: d }, () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()));
    const n = Math.hypot(...v);
    return v.map((x) => x / n);
  });
}

async function main(): Promise<void> {
  enableRelaxedSimd();
  const { values } = parseArgs({ options: { questions: { type: "string" }, "old-questions": { type: "string" }, threads: { type: "string" } } });
  const newQuestions = Number(values.questions ?? QUESTIONS);
  const oldQuestions = Number(values["old-questions"] ?? 2);
  if (!(newQuestions >= 1 && newQuestions <= QUESTIONS && oldQuestions >= 1 && oldQuestions <= newQuestions)) throw new Error(`need 1 <= --old-questions (${oldQuestions}) <= --questions (${newQuestions}) <= ${QUESTIONS}`);
  const threads = Number(values.threads ?? 2);
  const machine = machineInfo();
  const dir = ensureBenchCheckpoint();
  const tok = await loadTokenizerFromDir(dir);
  const prompts: AbPrompt[] = questions().map((item, i) => toAbPrompt(buildItemPrompt(tok, item, { chat: true }), i));
  const lengths = prompts.map((p) => p.tokens.length);
  const ckpt = openCheckpoint(dir);
  const d = ckpt.config.hiddenSize;
  const vecs = vectors(d).map((vector, index) => ({ index, label: `random:${index}`, vector }));
  const opts = { layer: LAYER, vectors: vecs, scales: SCALES };
  const perQuestion = 1 + VECTORS * SCALES.length;
  console.error(`bench eval-ab: ${QUESTIONS} questions (chat template, ${Math.min(...lengths)}..${Math.max(...lengths)} tokens, mean ${(lengths.reduce((a, b) => a + b, 0) / lengths.length).toFixed(1)}) x ${VECTORS} vectors x ${SCALES.length} scales at layer ${LAYER}: ${QUESTIONS * perQuestion} sequences`);

  // Batched, on the engine's forward.
  let t0 = performance.now();
  const rt = await createNodeRuntime();
  const gemm = await createParallelGemm(rt, threads);
  const fm = await ForwardModel.create(rt, ckpt.config, ckpt.tensors, { gemm, log: (l) => console.error(l), scoredTokens: prompts.flatMap((p) => [p.matchingId, p.otherId]) });
  const newLoad = (performance.now() - t0) / 1000;
  t0 = performance.now();
  let lastLog = t0;
  const rows = await evaluateAbBatched(fm, prompts.slice(0, newQuestions), {
    ...opts,
    onQuestion: (done, total) => {
      if (performance.now() - lastLog > 10000 || done === total) console.error(`  batched: ${done}/${total} questions, ${((performance.now() - t0) / 1000).toFixed(0)} s`), (lastLog = performance.now());
    },
  });
  const newTimed = (performance.now() - t0) / 1000;
  const newTokens = lengths.slice(0, newQuestions).reduce((a, b) => a + b, 0);
  const newEval = (newTimed * lengths.reduce((a, b) => a + b, 0)) / newTokens;
  const heapPeak = rt.heap.peakBytes;
  await fm.close();
  console.error(`bench eval-ab: batched: load ${newLoad.toFixed(1)} s, evaluation ${newEval.toFixed(1)} s (${threads} threads, weights ${fm.weightPlan.mode})`);

  // Today's code: the decoder on the autodiff model (f32 weights, all layers and the head resident).
  t0 = performance.now();
  const rt2 = await createNodeRuntime();
  const ctx = new AutodiffContext(rt2);
  const w = ctx.noGrad(() => loadQwen3Weights(ctx, ckpt.config, ckpt.tensors, { head: true }));
  const decoder = new SteeredDecoder(new Qwen3Model(ctx, ckpt.config, w), Math.max(...lengths));
  const oldLoad = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const oldRows: AbRow[] = evaluateAb(decoder, prompts.slice(0, oldQuestions), opts);
  const oldEval = (performance.now() - t0) / 1000;
  const oldTokens = lengths.slice(0, oldQuestions).reduce((a, b) => a + b, 0), allTokens = lengths.reduce((a, b) => a + b, 0);
  // Extrapolated by tokens (a sequence's cost is about linear in its length at these lengths).
  const oldEval100 = (oldEval * allTokens) / oldTokens;
  let maxDiff = 0;
  oldRows.forEach((r, i) => (maxDiff = Math.max(maxDiff, Math.abs(r.diff - rows[i]!.diff))));
  const spread = Math.max(...rows.map((r) => Math.abs(r.diff)));
  console.error(`bench eval-ab: today's code: load ${oldLoad.toFixed(1)} s, ${oldQuestions} questions in ${oldEval.toFixed(1)} s -> ${oldEval100.toFixed(0)} s for ${QUESTIONS}; same rows: max |diff difference| ${maxDiff.toExponential(2)} (|diff| up to ${spread.toFixed(2)})`);
  ckpt.close();

  const speedup = oldEval100 / newEval;
  const result = {
    machine, threads, questions: QUESTIONS, vectors: VECTORS, scales: SCALES, layer: LAYER, sequences: QUESTIONS * perQuestion,
    tokens: { min: Math.min(...lengths), max: Math.max(...lengths), total: allTokens },
    batched: { load_s: newLoad, questions_timed: newQuestions, eval_s: newTimed, eval_s_extrapolated: newEval, weights: fm.weightPlan.mode, wasm_heap_peak_bytes: heapPeak },
    today: { load_s: oldLoad, questions_timed: oldQuestions, eval_s: oldEval, eval_s_extrapolated: oldEval100 },
    speedup, max_diff_difference: maxDiff, max_abs_diff: spread,
  };
  const out = join(packageRoot(), "bench", "results");
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "eval-ab.json"), JSON.stringify(result, null, 2) + "\n");
  const md = [
    "# eval-ab: batched forward vs today's code",
    "",
    `Machine: ${machineLine(machine)}.`,
    "",
    `Workload: Qwen3-0.6B-shaped BF16 checkpoint (random weights, real Qwen3 tokenizer), ${QUESTIONS} A/B questions (examples/ab-dataset.json items under numbered preambles, chat template, ${result.tokens.min}..${result.tokens.max} tokens), ` +
      `${VECTORS} random unit vectors x scales ${SCALES.join(", ")} at layer ${LAYER}: ${result.sequences} scored sequences (the unsteered one per question included).`,
    (newQuestions < QUESTIONS
      ? `The batched forward was timed on the first ${newQuestions} questions (${newQuestions * perQuestion} sequences) and extrapolated to all ${QUESTIONS} by prompt tokens (a run of all ${QUESTIONS} takes over half an hour on this machine). `
      : "") +
    `Today's code (evaluateAb: the autodiff model's KV-cache decoder, one sequence at a time, one thread, f32 weights) was timed on the first ${oldQuestions} questions ` +
      `(${oldQuestions * perQuestion} sequences, ${oldTokens} prompt tokens per steering) and extrapolated to all ${QUESTIONS} by prompt tokens; both ran in the same process, one after the other.`,
    "",
    markdownTable(
      ["path", "threads", "load s", "evaluation s (100 questions)", "sequences/s"],
      [
        [`batched forward (evaluateAbBatched, \`jacsteer eval-ab\`)${newQuestions < QUESTIONS ? `, ${newQuestions} questions timed` : ""}`, String(threads), newLoad.toFixed(1), newQuestions < QUESTIONS ? `${newEval.toFixed(0)} (extrapolated from ${newTimed.toFixed(1)} s)` : newEval.toFixed(1), (result.sequences / newEval).toFixed(1)],
        [`today's code (evaluateAb), ${oldQuestions} questions timed`, "1", oldLoad.toFixed(1), `${oldEval100.toFixed(0)} (extrapolated from ${oldEval.toFixed(1)} s)`, (result.sequences / oldEval100).toFixed(2)],
      ],
    ),
    "",
    `- Speed-up of the evaluation: **${speedup.toFixed(1)}x** (goal: at least 5x).`,
    `- Same numbers: over the ${oldRows.length} rows both computed, max |diff difference| ${maxDiff.toExponential(2)} (the diffs reach ${spread.toFixed(2)}).`,
    `- Batched: weights ${fm.weightPlan.mode}, wasm heap peak ${(heapPeak / 2 ** 30).toFixed(2)} GiB.`,
    "",
    "Regenerate with `npm run build && node dist/bench/make-checkpoint.js 0.6b && node --experimental-wasm-relaxed-simd dist/bench/eval-ab.js`.",
    "",
  ].join("\n");
  writeFileSync(join(out, "eval-ab.md"), md);
  process.stdout.write(md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
