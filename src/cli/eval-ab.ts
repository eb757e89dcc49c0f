// `jacsteer eval-ab`: A/B questions scored by the logit difference between the two answer letters
// at the last prompt position, unsteered and per (vector, scale), with a summary per combination
// and per vector how linear the mean difference is in the scale.
import { readFileSync, existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { intFlag, parseFlags, stringList, type Options } from "./args.js";
import { UsageError } from "./errors.js";
import { defaultModelDir, loadModel, log } from "./session.js";
import { optionalTokenizer, readVectorChoices, scalesFlag, steeringLayer, type VectorChoice } from "./generate.js";
import { openCheckpoint } from "../node/checkpoint.js";
import { writeFileAtomic } from "../node/safetensors-file.js";
import { SteeredDecoder } from "../generation/decoder.js";
import { parseAbDataset } from "../evaluation/dataset.js";
import { buildAbPrompt, DEFAULT_ANSWER_PREFIX, unescapeFlagText, type AbPrompt } from "../evaluation/prompt.js";
import { evaluateAb, summarizeAb, type AbSummary, type AbSummaryRow } from "../evaluation/ab.js";

export const EVAL_AB_HELP = `jacsteer eval-ab: A/B questions, logit(matching letter) - logit(other letter) per vector and scale

  --dataset FILE           the questions (required): a JSON array, or JSON Lines, of objects with
                           "question", "answer_matching_behavior" and "answer_not_matching_behavior"
                           (answers "(A)", "A", " (A)", "(A) text", or a one-element list of one)
  --model DIR              checkpoint directory (default: the bundled tiny model); needs tokenizer.json
  --chat, --system TEXT    the question as a user message in the chat template (generation prompt,
                           thinking disabled); the answer prefix then opens the assistant's reply
  --answer-prefix TEXT     text after the question; the next token is scored as the letter
                           (default "\\n\\nAnswer: (" plain, "(" with --chat; \\n and \\t are unescaped)
  --vectors FILE[:ROW]     steering vector(s) (repeatable): FILE alone = every row of FILE
  --scales LIST            comma-separated scales, e.g. -10,-5,0,5,10 (needed with --vectors)
  --layer S                layer whose output receives scale * vector (default: the vector files'
                           source_layer when they agree, else the model-size default)
  --limit N                only the first N questions
  --json                   print the summary as JSON on stdout instead of a table
  --out FILE.json          write every question's row (logits, diff, shift) to FILE.json

Prompt: text = question (or its chat rendering) + answer prefix, tokenized as a whole; a letter's
token id is the token that text + letter adds (a warning says when the tokenizer merges the
letter with the prefix instead). Every question is also run unsteered: "baseline", and
shift = diff - baseline diff. Per (vector, scale): the share of questions with diff > 0 (matching
preferred) and < 0, mean diff, mean shift, mean p(matching) = mean sigmoid(diff); per vector the
least-squares slope, intercept and R^2 of mean diff against scale.
`;

const OPTIONS: Options = {
  dataset: { type: "string" },
  model: { type: "string" },
  chat: { type: "boolean" },
  system: { type: "string" },
  "answer-prefix": { type: "string" },
  vectors: { type: "string", multiple: true },
  scales: { type: "string" },
  layer: { type: "string" },
  limit: { type: "string" },
  json: { type: "boolean" },
  out: { type: "string" },
  help: { type: "boolean", short: "h" },
};

function readDataset(file: string): string {
  if (!existsSync(file)) throw new UsageError(`--dataset ${file}: file does not exist`);
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`--dataset ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

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
    for (const l of summary.linearity) out.push(`  ${l.vector_index}: ${l.vector}: slope ${fmt(l.slope, 5)} per unit scale, intercept ${fmt(l.intercept)}, R^2 ${fmt(l.r2)}`);
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
  const limit = intFlag(f, "limit", undefined, 1);
  checkJsonOut(f.out as string | undefined);
  const chat = !!f.chat;
  const answerPrefix = f["answer-prefix"] === undefined ? (chat ? DEFAULT_ANSWER_PREFIX.chat : DEFAULT_ANSWER_PREFIX.plain) : unescapeFlagText(String(f["answer-prefix"]));

  const started = performance.now();
  const datasetFile = String(f.dataset);
  let questions = parseAbDataset(readDataset(datasetFile), datasetFile);
  if (limit !== undefined) questions = questions.slice(0, limit);

  const peek = openCheckpoint((f.model as string | undefined) ?? defaultModelDir());
  const L = peek.config.numLayers;
  const d = peek.config.hiddenSize;
  let vectors: VectorChoice[];
  let prompts: AbPrompt[];
  try {
    vectors = readVectorChoices(vectorArgs, "--vectors", d);
    const tok = await optionalTokenizer(peek.dir);
    if (!tok) throw new UsageError(`--model ${peek.dir}: no tokenizer.json (eval-ab tokenizes the questions)`);
    prompts = questions.map((q) => buildAbPrompt(tok, q, { chat, system: f.system as string | undefined, answerPrefix }));
  } finally {
    peek.close();
  }
  const merged = prompts.filter((p) => p.letterMerged).length;
  if (merged) log(`jacsteer: warning: in ${merged} question(s) the tokenizer merges the answer letter with the end of the answer prefix ${JSON.stringify(answerPrefix)}; the letter's own token id is scored (consider another --answer-prefix)`);
  const S = vectors.length ? steeringLayer(f, L, vectors) : -1;

  const { rt, ckpt, model } = await loadModel(f.model as string | undefined, { head: true });
  prompts.forEach((p) => model.checkTokens(p.tokens, `--dataset ${datasetFile}: question ${p.question.index}`));
  const decoder = new SteeredDecoder(model, Math.max(...prompts.map((p) => p.tokens.length)));
  log(
    `jacsteer: ${ckpt.name}: ${questions.length} question(s) from ${datasetFile}, prompts of ${Math.min(...prompts.map((p) => p.tokens.length))}..${Math.max(...prompts.map((p) => p.tokens.length))} tokens; ` +
      `answer prefix ${JSON.stringify(answerPrefix)}${chat ? " after the chat template" : ""}; ` +
      `${vectors.length ? `${vectors.length} vector(s) x ${scales!.length} scale(s) at layer ${S}` : "unsteered only"}; kernels ${rt.build}`,
  );
  let lastLog = performance.now();
  const rows = evaluateAb(decoder, prompts, {
    layer: S,
    vectors,
    scales: scales ?? [],
    onQuestion: (done, total) => {
      if (done === total || performance.now() - lastLog > 2000) {
        log(`jacsteer: ${done}/${total} questions`);
        lastLog = performance.now();
      }
    },
  });
  const summary = summarizeAb(rows);
  const seconds = (performance.now() - started) / 1000;
  ckpt.close();

  if (f.out !== undefined) {
    const file = {
      dataset: datasetFile,
      model: ckpt.name,
      layer: vectors.length ? S : null,
      chat,
      system: f.system ?? null,
      answer_prefix: answerPrefix,
      questions: prompts.map((p) => ({ index: p.question.index, tokens: p.tokens, matching: p.question.matching, other: p.question.other, matching_id: p.matchingId, other_id: p.otherId, letter_merged: p.letterMerged })),
      rows,
    };
    writeFileAtomic(String(f.out), jsonOneItemPerLine(file));
    log(`jacsteer: wrote ${f.out}`);
  }
  if (f.json) {
    const out = {
      dataset: datasetFile,
      model: ckpt.name,
      questions: questions.length,
      layer: vectors.length ? S : null,
      scales: scales ?? [],
      vectors: vectors.map((v) => v.label),
      chat,
      answer_prefix: answerPrefix,
      letters_merged: merged,
      ...summary,
      seconds,
      kernels: rt.build,
      out: f.out ?? null,
    };
    process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  } else {
    process.stdout.write(table(summary));
    log(`jacsteer: ${rows.length} forward passes in ${seconds.toFixed(2)} s`);
  }
  return 0;
}
