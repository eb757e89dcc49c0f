// `jacsteer eval-ab`: questions scored by the logit difference between the two answer tokens at the
// last prompt position, unsteered and per (vector, scale), with a summary per combination and per
// vector how linear the mean difference is in the scale. Items come from the dataset reader and prompt
// builder caa uses (src/evaluation/). A thin layer over the library's evalAb (src/api/eval-ab.ts).
import { existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { intFlag, parseFlags, stringList, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { defaultModelDir, log, warn, warnings } from "./session.js";
import { chooseItems, DATASET_HELP, DATASET_OPTIONS } from "./dataset-flags.js";
import { readVectorChoices, scalesFlag } from "./generate.js";
import { openCheckpoint } from "../node/checkpoint.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import * as api from "../node/api.js";
import { unescapeFlagText } from "../evaluation/prompt.js";
import type { AbSummary, AbSummaryRow } from "../evaluation/ab.js";
import { threadsFlag } from "./threads.js";
import { weightsFlag, WEIGHTS_HELP } from "./weights-flag.js";

export const EVAL_AB_HELP = `jacsteer eval-ab: questions scored by logit(matching answer token) - logit(other answer token),
unsteered and per vector and scale

${DATASET_HELP}  --model DIR              checkpoint directory (default: the bundled tiny model, random weights: for
                           tests only); needs tokenizer.json
  --chat, --system TEXT    the question as a user message in the chat template (generation prompt,
                           thinking disabled); the answer opens the assistant's reply
  --answer-prefix TEXT     text between the question and the answer (default: none with --chat or when
                           the question already ends in "Answer:", else "\n\nAnswer:"; \n and \t are
                           unescaped). Prompt/completion items take their completion verbatim.
  --vectors FILE[:ROW]     steering vector(s) (repeatable): FILE alone = every row of FILE; ROW -1 = the last
  --scales LIST            comma-separated scales, e.g. -10,-5,0,5,10 (needed with --vectors)
  --layer S                layer whose output receives scale * vector (default: the vector files'
                           source_layer when they agree, else the model-size default)
  --threads N              worker threads (default: all cores; more than the cores is capped, with a line)
${WEIGHTS_HELP}  --json                   print the summary as JSON on stdout instead of a table (first_item, items,
                           warnings, threads, weights, ...)
  --out FILE.json          write every question's row (logits, diff, shift) to FILE.json

The prompt: question (or its chat rendering) + prefix; the answers are written as they follow it,
"(A)" for a letter ("A)" after a prefix ending in "("), the answer text (" Yes") otherwise, and the
two texts tokenized as a whole must differ in exactly one token (shared tokens such as " (" and ")"
may surround it): the scored prompt is every token before it, and the two scored tokens are where the
answers differ, e.g. "A" vs "B", "(A" vs "(B" with a Qwen3 tokenizer and --chat, " Yes" vs " No".
Answers that differ in more than one token are an error naming the item. The first item's exact
prompt and scored tokens are printed to stderr. Every question is also run unsteered: "baseline",
and shift = diff - baseline diff. Per (vector, scale): the share of questions with diff > 0 (matching
preferred) and < 0, mean diff, mean shift, mean p(matching) = mean sigmoid(diff); per vector the
least-squares slope, intercept and R^2 of mean diff against scale, with a warning when it rests on
fewer than 3 scales or R^2 < 0.5.

How it runs: layers 0..S once per question (they do not depend on the steering), then every
(question, vector, scale) sequence and the unsteered one through layers S+1..L-1 together, in
batches that keep memory bounded, on --threads threads; the final norm and only the two scored rows
of the LM head at the last position. The numbers do not depend on --threads or the batching.
`;

const OPTIONS: Options = {
  ...DATASET_OPTIONS,
  model: { type: "string" },
  chat: { type: "boolean" },
  system: { type: "string" },
  "answer-prefix": { type: "string" },
  vectors: { type: "string", multiple: true },
  scales: { type: "string" },
  layer: { type: "string" },
  threads: { type: "string" },
  weights: { type: "string" },
  json: { type: "boolean" },
  out: { type: "string" },
  help: { type: "boolean", short: "h" },
};

function checkJsonOut(out: string | undefined): void {
  if (out === undefined) return;
  if (!out.endsWith(".json")) throw new UsageError(`--out ${out}: the file name must end in .json`);
  const dir = dirname(resolve(out));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--out ${out}: directory ${dir} does not exist`);
}

/** JSON with each element of a top-level array on its own line: readable, and greppable per question. */
function jsonOneItemPerLine(obj: Record<string, unknown>): string {
  const fields = Object.entries(obj).map(([k, v]) =>
    Array.isArray(v) ? `  ${JSON.stringify(k)}: [\n${v.map((x) => "    " + JSON.stringify(x)).join(",\n")}\n  ]` : `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`,
  );
  return `{\n${fields.join(",\n")}\n}\n`;
}

const fmt = (x: number | null, digits = 4) => (x === null ? "-" : x.toFixed(digits));

function table(summary: AbSummary): string {
  const head = ["vector", "scale", "n", "matching", "other", "mean diff", "mean shift", "p(match)"];
  const line = (s: AbSummaryRow, name: string, scale: string) => [name, scale, String(s.n), fmt(s.share_matching, 3), fmt(s.share_other, 3), fmt(s.mean_diff), fmt(s.mean_shift), fmt(s.mean_p_matching, 3)];
  const rows = [line(summary.baseline, "(unsteered)", "-"), ...summary.rows.map((s) => line(s, `${s.vector_index}: ${s.vector}`, String(s.scale)))];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const pad = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  const out = [pad(head), ...rows.map(pad)];
  if (summary.linearity.length) {
    out.push("", "mean diff against scale (least squares):");
    for (const l of summary.linearity) {
      out.push(`  ${l.vector_index}: ${l.vector}: slope ${fmt(l.slope, 5)} per unit scale, intercept ${fmt(l.intercept)}, R^2 ${fmt(l.r2)}${l.fit_warning ? ` -- NOT A FIT: ${l.fit_warning}` : ""}`);
    }
  }
  return out.join("\n") + "\n";
}

export async function evalAb(argv: string[]): Promise<number> {
  const f = parseFlags(argv, OPTIONS);
  if (f.help) {
    process.stdout.write(EVAL_AB_HELP);
    return 0;
  }
  if (f.dataset === undefined) throw new UsageError("--dataset FILE is required");
  const scales = scalesFlag(f.scales);
  const vectorArgs = stringList(f, "vectors");
  if (vectorArgs.length && !scales) throw new UsageError("--vectors needs --scales (e.g. --scales -10,-5,0,5,10)");
  if (scales && !vectorArgs.length) throw new UsageError("--scales needs --vectors");
  if (f.layer !== undefined && !vectorArgs.length) throw new UsageError("--layer needs --vectors");
  if (f.system !== undefined && !f.chat) throw new UsageError("--system needs --chat");
  checkJsonOut(f.out as string | undefined);
  const threads = threadsFlag(f, log);
  const weights = weightsFlag(f);
  const chat = !!f.chat;
  const answerPrefix = f["answer-prefix"] === undefined ? undefined : unescapeFlagText(String(f["answer-prefix"]));

  const datasetFile = String(f.dataset);
  if (!existsSync(datasetFile)) throw new UsageError(`--dataset ${datasetFile}: file does not exist`);
  const chosen = chooseItems(f, "evaluate", datasetFile);

  // The checkpoint is opened here to check the vector files against its hidden size (errors name --vectors).
  const ckpt = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  let result;
  try {
    const vectors = readVectorChoices(vectorArgs, "--vectors", ckpt.config.hiddenSize);
    result = await api.evalAb({
      model: ckpt,
      threads,
      dataset: chosen,
      chat,
      system: f.system as string | undefined,
      answerPrefix,
      vectors,
      scales,
      layer: f.layer === undefined ? undefined : intFlag(f, "layer", 0, 0),
      weights,
      log,
      onWarning: warn,
    });
  } finally {
    ckpt.close();
  }
  const { rows, summary, prompts, seconds } = result;
  const S = result.layer;
  const vectors = result.vectors;

  if (f.out !== undefined) {
    const file = {
      dataset: datasetFile,
      model: ckpt.name,
      layer: S,
      chat,
      system: f.system ?? null,
      answer_prefix: answerPrefix ?? null,
      items: chosen.summary,
      questions: prompts.map((p) => ({ question: p.question, item: p.item.ref, eval: p.item.eval, index: p.item.index, tokens: p.tokens, matching: p.item.matching, other: p.item.other, matching_id: p.matchingId, other_id: p.otherId, swapped: !!p.item.swapped })),
      rows,
    };
    writeFileAtomic(String(f.out), jsonOneItemPerLine(file));
    log(`jacsteer: wrote ${f.out}`);
  }
  if (f.json) {
    const out = {
      dataset: datasetFile,
      model: ckpt.name,
      questions: prompts.length,
      layer: S,
      scales: result.scales,
      vectors,
      chat,
      answer_prefix: answerPrefix ?? null,
      first_item: result.firstItem,
      items: result.items,
      ...summary,
      warnings: warnings(),
      seconds,
      threads: result.threads,
      weights: result.weights,
      kernels: result.kernels,
      out: f.out ?? null,
    };
    process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  } else {
    process.stdout.write(table(summary));
    log(`jacsteer: ${rows.length} sequences scored in ${seconds.toFixed(2)} s`);
  }
  return 0;
}
